package gc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// Defaults for Options.
const (
	DefaultGrace          = time.Hour
	DefaultReprieveWindow = snapshot.DefaultReprieveWindow
)

// Options configure a run.
type Options struct {
	// Retention is how far back every txid stays restorable. It must be
	// positive: the newest state is always kept whatever it says.
	Retention time.Duration
	// Grace is how old, by the store's clock, a chunk that no manifest
	// names must be before it is deleted; it must exceed the longest a
	// snapshot takes. Zero means DefaultGrace.
	Grace time.Duration
	// ReprieveWindow bounds the time between listing reprieves and
	// deleting a chunk; snapshots wait as long after storing one (see the
	// package documentation). Zero means DefaultReprieveWindow.
	ReprieveWindow time.Duration
	// DryRun reports what would go and deletes nothing.
	DryRun bool
	Log    *slog.Logger
}

// Object is something gc deleted, or would delete.
type Object struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

// Report says what a run found and did.
type Report struct {
	// Oldest is the oldest snapshot kept: every txid from it on that the
	// replica held stays restorable.
	Oldest uint64 `json:"oldest_snapshot_txid"`
	// Deleted lists what went (with DryRun: what would go), oldest first:
	// manifests, change sets, packs, chunks, expired reprieves.
	Deleted []Object `json:"deleted"`
	Bytes   int64    `json:"bytes"`
	// Spared counts garbage chunks and packs kept because they are
	// younger than Grace or a reprieve names them.
	Spared int  `json:"spared_chunks"`
	DryRun bool `json:"dry_run"`
}

// Run sweeps store once.
func Run(ctx context.Context, store objstore.Store, o Options) (Report, error) {
	if o.Retention <= 0 {
		return Report{}, errors.New("gc: retention must be positive")
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.ReprieveWindow <= 0 {
		o.ReprieveWindow = DefaultReprieveWindow
	}
	if min := MinGrace(o.ReprieveWindow); o.Grace < min {
		return Report{}, fmt.Errorf("gc: grace %s is too short: a snapshot that relies on stored chunks waits %s for its reprieve, and store clocks may count in whole seconds; use at least %s", o.Grace, o.ReprieveWindow, min)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	rep := Report{DryRun: o.DryRun}
	// A dry run writes nothing, not even the clock: it judges ages by
	// this machine's clock, which only shifts what it lists.
	now := time.Now()
	if !o.DryRun {
		var err error
		if now, err = storeNow(ctx, store); err != nil {
			return rep, err
		}
	}
	// Manifests first: a chunk is garbage only if no manifest listed
	// from here on names it (see the package documentation).
	l, err := layout.Read(ctx, store, layout.Snapshots|layout.Segments, segment.Heads(store))
	if err != nil {
		return rep, err
	}
	if len(l.Snapshots) == 0 {
		return rep, nil // nothing restores yet; nothing is collected
	}
	manifests := make(map[uint64]*snapshot.Manifest, len(l.Snapshots))
	var keep int // index in l.Snapshots of the oldest snapshot kept
	for i, s := range l.Snapshots {
		m, err := snapshot.Load(ctx, store, s.TXID)
		if errors.Is(err, objstore.ErrKey) && i == 0 {
			// Not damage: without the replica's key gc can judge nothing.
			return rep, err
		}
		if err != nil {
			// A manifest that cannot be read cannot be judged: keep it and
			// everything after it, and say so.
			o.Log.Warn("gc: cannot read a manifest; keeping it and everything after it", "key", s.Key, "err", err)
			break
		}
		manifests[s.TXID] = &m
		if !m.Time.After(now.Add(-o.Retention)) {
			keep = i
		}
	}
	oldest := l.Snapshots[keep].TXID
	rep.Oldest = oldest

	var doomed []Object
	for _, s := range l.Snapshots[:keep] {
		doomed = append(doomed, Object{s.Key, s.Size})
	}
	for _, s := range l.Segments {
		if s.Last <= oldest {
			doomed = append(doomed, Object{s.Key, s.Size})
		}
	}
	// A break marker at txid b speaks to a follower that holds b-1 and
	// waits for b; from the oldest snapshot kept on, none asks for it
	// once b is at or below that snapshot.
	for _, b := range l.Breaks {
		if b.TXID <= oldest {
			doomed = append(doomed, Object{b.Key, b.Size})
		}
	}
	named := snapshot.AddressSet{}
	namedPacks := map[snapshot.PackID]bool{}
	for _, s := range l.Snapshots[keep:] {
		m := manifests[s.TXID]
		if m == nil {
			// Unread above: the chunks it names are unknown, so no chunk
			// can be judged garbage in this run.
			return rep, deleteAll(ctx, store, doomed, &rep, o)
		}
		named.AddManifest(m)
		for _, p := range m.Packs {
			namedPacks[p.ID] = true
		}
	}
	if err := deleteAll(ctx, store, doomed, &rep, o); err != nil {
		return rep, err
	}

	chunks, err := layout.Read(ctx, store, layout.Chunks|layout.Packs, nil)
	if err != nil {
		return rep, err
	}
	// A pack no kept manifest names is garbage once older than Grace: a
	// snapshot relies only on the packs it stored itself, which are
	// younger until its manifest lands, and on those of manifests kept
	// (see the package documentation).
	var garbagePacks []Object
	for _, p := range chunks.Packs {
		switch {
		case namedPacks[p.ID]:
		case now.Sub(p.Modified)-clockResolution < o.Grace:
			rep.Spared++
		default:
			garbagePacks = append(garbagePacks, Object{p.Key, p.Size})
		}
	}
	if err := deleteAll(ctx, store, garbagePacks, &rep, o); err != nil {
		return rep, err
	}
	var garbage []layout.Chunk
	for _, c := range chunks.Chunks {
		if _, ok := named[snapshot.Address(c.Addr)]; ok {
			continue
		}
		// Some stores (versitygw) keep modification times to the second:
		// an object may be up to a second younger than it looks.
		if now.Sub(c.Modified)-clockResolution < o.Grace {
			rep.Spared++ // perhaps a snapshot in flight's
			continue
		}
		garbage = append(garbage, c)
	}
	reprieved := map[[32]byte]bool{}
	var listed time.Time
	var expired []Object
	relist := func() error {
		listed = time.Now()
		var err error
		expired, err = readReprieves(ctx, store, now, o.Grace, reprieved)
		return err
	}
	if err := relist(); err != nil {
		return rep, err
	}
	for batch := range slices.Chunk(garbage, chunkBatch) {
		if time.Since(listed) >= o.ReprieveWindow/2 {
			// A reprieve stored since the listing would not be seen: list
			// again before going on (see the package documentation).
			if err := relist(); err != nil {
				return rep, err
			}
		}
		var objs []Object
		for _, c := range batch {
			if reprieved[c.Addr] {
				rep.Spared++
				continue
			}
			objs = append(objs, Object{c.Key, c.Size})
		}
		// The deletion must land inside the window: a request that takes
		// longer is abandoned (the argument assumes a request reaches the
		// store within half a window of being sent).
		dctx, cancel := context.WithDeadline(ctx, listed.Add(o.ReprieveWindow))
		err := deleteAll(dctx, store, objs, &rep, o)
		cancel()
		if err != nil {
			return rep, err
		}
	}
	// Reprieves go last, and only those older than Grace: their snapshot
	// has landed, naming its chunks, or failed.
	return rep, deleteAll(ctx, store, expired, &rep, o)
}

// storeNow returns the time on the store's clock, as the modification time
// of an object written for the purpose.
func storeNow(ctx context.Context, store objstore.Store) (time.Time, error) {
	if _, err := store.Put(ctx, layout.ClockKey, bytes.NewReader(nil), objstore.PutOptions{}); err != nil {
		return time.Time{}, fmt.Errorf("gc: read the store's clock: %w", err)
	}
	info, err := store.Head(ctx, layout.ClockKey)
	if err != nil {
		return time.Time{}, fmt.Errorf("gc: read the store's clock: %w", err)
	}
	return info.Modified, nil
}

// readReprieves adds to spare every chunk address a reprieve names, and
// returns the reprieves older than grace.
func readReprieves(ctx context.Context, store objstore.Store, now time.Time, grace time.Duration, spare map[[32]byte]bool) ([]Object, error) {
	var expired []Object
	for info, err := range store.List(ctx, layout.ReprievesDir) {
		if err != nil {
			return nil, fmt.Errorf("gc: list reprieves: %w", err)
		}
		if _, err := layout.ParseReprieveKey(info.Key); err != nil {
			continue
		}
		addrs, err := readReprieve(ctx, store, info.Key)
		if errors.Is(err, objstore.ErrNotFound) {
			continue // its snapshot's own cleanup, or another gc
		}
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			spare[a] = true
		}
		if now.Sub(info.Modified)-clockResolution >= grace {
			expired = append(expired, Object{info.Key, info.Size})
		}
	}
	return expired, nil
}

func readReprieve(ctx context.Context, store objstore.Store, key string) ([][32]byte, error) {
	rc, _, err := store.Get(ctx, key, nil)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxReprieveBytes+1))
	if err != nil {
		return nil, fmt.Errorf("gc: read reprieve %s: %w", key, err)
	}
	addrs, err := snapshot.ParseReprieve(data)
	if err != nil {
		return nil, fmt.Errorf("gc: reprieve %s: %w", key, err)
	}
	return addrs, nil
}

// MinGrace is the shortest grace gc accepts with a reprieve window of
// window: a snapshot waits that long after storing a reprieve before its
// manifest lands, and the store's clock may count in whole seconds.
func MinGrace(window time.Duration) time.Duration { return window + 2*clockResolution }

// clockResolution is the coarsest modification time a store keeps.
const clockResolution = time.Second

// chunkBatch is how many chunks one delete request takes: small enough to
// finish well inside a reprieve window.
const chunkBatch = 200

// maxReprieveBytes bounds what gc reads of one reprieve: a hostile object
// must not exhaust memory.
const maxReprieveBytes = 64 << 20

// deleteAll deletes objs (or, dry, only counts them) in order.
func deleteAll(ctx context.Context, store objstore.Store, objs []Object, rep *Report, o Options) error {
	for batch := range slices.Chunk(objs, 1000) {
		if !o.DryRun {
			keys := make([]string, len(batch))
			for i, obj := range batch {
				keys[i] = obj.Key
			}
			if err := store.Delete(ctx, keys...); err != nil {
				return fmt.Errorf("gc: delete: %w", err)
			}
		}
		for _, obj := range batch {
			rep.Deleted = append(rep.Deleted, obj)
			rep.Bytes += obj.Size
		}
	}
	return nil
}
