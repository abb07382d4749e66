// Package scrub checks, in the background and at a pace that leaves the
// machine and the link to the store to the application, that every object
// of a replica is present and intact, and repairs what it can. It follows
// Garage's scrub: a pass over every object each Interval, reading for at
// most a Share of the time (the rest it sleeps: a tranquilizer), damage
// counted in metrics.
//
// What it finds, and what it does:
//
//   - A pack missing or damaged: a damaged one is deleted, and the
//     replicator is told to reread every chunk at its next snapshot.
//     Packs have random names, so no other target holds the same one.
//   - A chunk missing or damaged: with another target holding it intact,
//     it is copied from there. Otherwise a damaged copy is deleted and the
//     replicator is told to reread every chunk at its next snapshot, which
//     stores again each chunk the live database still holds (content
//     addresses make that the same object).
//   - A change set missing or damaged: copied from another target when
//     one holds it intact; otherwise a damaged copy is deleted and the
//     replicator records the txids it held as a gap, and, when the live
//     chain ran through it, starts the chain again with a snapshot.
//   - A manifest that cannot be read: copied from another target, or else
//     the replicator takes a full snapshot.
package scrub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// Repairer is what the scrub needs of the replicator of the database.
type Repairer interface {
	// RewriteChunks makes the next snapshot to url reread and store every
	// chunk of the live database, soon.
	RewriteChunks(url string)
	// LostChangeSet says that url lost the change set for first..last.
	LostChangeSet(url string, first, last uint64, why string)
}

// Options configure a Scrubber.
type Options struct {
	// Targets are the database's replicas, by URL.
	Targets map[string]objstore.Store
	Repair  Repairer
	// Keys check the chunk addresses of an encrypted database's
	// replicas; nil without encryption.
	Keys snapshot.Keys
	// Interval is how long one pass over every object of a target should
	// take; the pass is spread over it. Zero means a week.
	Interval time.Duration
	// Share bounds the share of time spent reading; zero means 0.1.
	Share float64
	Log   *slog.Logger
	// Metrics, when set, counts checks, damage and repairs.
	Metrics *Metrics
}

// Report counts what one pass over one target found and did.
type Report struct {
	Checked  int
	Bytes    int64
	Damaged  []string // keys, with what was wrong
	Repaired int
}

// Scrubber scrubs the replicas of one database.
type Scrubber struct{ o Options }

// New returns a Scrubber.
func New(o Options) *Scrubber {
	if o.Interval <= 0 {
		o.Interval = 7 * 24 * time.Hour
	}
	if o.Share <= 0 || o.Share > 1 {
		o.Share = 0.1
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Scrubber{o: o}
}

// Run scrubs every target, one pass after another, until ctx ends.
func (s *Scrubber) Run(ctx context.Context) {
	for ctx.Err() == nil {
		for url := range s.o.Targets {
			start := time.Now()
			rep, err := s.Pass(ctx, url)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				s.o.Log.Warn("scrub pass failed; trying again at the next one", "target", url, "err", err)
			default:
				s.o.Log.Info("scrub pass done", "target", url, "objects", rep.Checked, "bytes", rep.Bytes,
					"damaged", len(rep.Damaged), "repaired", rep.Repaired, "took", time.Since(start).Round(time.Second))
			}
			// A pass that failed early, or a replica with few objects,
			// must not turn into a busy loop.
			if !s.sleep(ctx, s.o.Interval-time.Since(start)) {
				return
			}
		}
	}
}

// Pass checks every object of url's replica once, paced to take about
// Interval, and repairs what it finds damaged.
func (s *Scrubber) Pass(ctx context.Context, url string) (Report, error) {
	store := s.o.Targets[url]
	var rep Report
	l, err := layout.Read(ctx, store, layout.All, segment.Heads(store))
	if err != nil {
		return rep, err
	}
	total := len(l.Snapshots) + len(l.Segments) + len(l.Chunks) + len(l.Packs)
	if total == 0 {
		return rep, nil
	}
	per := s.o.Interval / time.Duration(total)
	pace := func(took time.Duration) bool {
		rest := time.Duration(float64(took) * (1/s.o.Share - 1))
		return s.sleep(ctx, max(rest, per-took))
	}
	present := make(map[[32]byte]bool, len(l.Chunks))
	for _, c := range l.Chunks {
		present[c.Addr] = true
	}
	presentPacks := make(map[snapshot.PackID]bool, len(l.Packs))
	for _, p := range l.Packs {
		presentPacks[p.ID] = true
	}
	// What the manifests say each pack holds, for checking its content.
	inPack := map[snapshot.PackID][]snapshot.PackChunk{}

	lostChunks := false
	var lostSets []layout.Segment // change sets handed to LostChangeSet
	for _, sn := range l.Snapshots {
		start := time.Now()
		m, err := snapshot.Load(ctx, store, sn.TXID)
		rep.Checked++
		rep.Bytes += sn.Size
		s.o.Metrics.checked(url, "manifest", sn.Size)
		if err != nil && !errors.Is(err, objstore.ErrNotFound) {
			s.damaged(&rep, url, "manifest", sn.Key, err)
			if s.copyFromPeer(ctx, url, sn.Key, func(data []byte) error { _, err := snapshot.ParseManifest(data); return err }) {
				s.repaired(&rep, url, "manifest", "copied")
			} else {
				lostChunks = true // a full snapshot carries the database on
			}
		}
		if err == nil {
			for id, chunks := range m.PackChunks() {
				if _, seen := inPack[id]; !seen {
					inPack[id] = chunks
				}
				if presentPacks[id] {
					continue
				}
				// Packs have random names, so no other target holds this
				// one: a full snapshot stores the database's chunks anew.
				key := layout.PackKey(id)
				presentPacks[id] = true // one report per pack
				s.damaged(&rep, url, "pack", key, fmt.Errorf("missing; named by %s", sn.Key))
				lostChunks = true
			}
			for i, a := range m.Chunks {
				if present[a] || m.Loc(i).Pack != snapshot.Loose {
					continue
				}
				key := snapshot.ChunkKey(a)
				present[a] = true // one report per chunk
				s.damaged(&rep, url, "chunk", key, fmt.Errorf("missing; named by %s (chunk %d)", sn.Key, i))
				if s.copyFromPeer(ctx, url, key, s.chunkCheck(a)) {
					s.repaired(&rep, url, "chunk", "copied")
				} else {
					lostChunks = true
				}
			}
		}
		if !pace(time.Since(start)) {
			return rep, ctx.Err()
		}
	}
	for _, sg := range l.Segments {
		start := time.Now()
		err := segment.Check(ctx, store, sg.Key)
		rep.Checked++
		rep.Bytes += sg.Size
		s.o.Metrics.checked(url, "segment", sg.Size)
		if err != nil && ctx.Err() == nil {
			s.damaged(&rep, url, "segment", sg.Key, err)
			if s.copyFromPeer(ctx, url, sg.Key, func(data []byte) error {
				_, err := segment.Verify(bytes.NewReader(data), segment.Options{Key: sg.Key})
				return err
			}) {
				s.repaired(&rep, url, "segment", "copied")
			} else {
				if err := store.Delete(ctx, sg.Key); err != nil {
					return rep, fmt.Errorf("delete damaged %s: %w", sg.Key, err)
				}
				s.o.Repair.LostChangeSet(url, sg.First, sg.Last, "damaged in the store: "+err.Error())
				lostSets = append(lostSets, sg)
				s.repaired(&rep, url, "segment", "gap")
			}
		}
		if !pace(time.Since(start)) {
			return rep, ctx.Err()
		}
	}
	for _, c := range l.Chunks {
		start := time.Now()
		n, err := snapshot.CheckChunk(ctx, store, c.Addr, s.o.Keys)
		rep.Checked++
		rep.Bytes += n
		s.o.Metrics.checked(url, "chunk", n)
		if err != nil && ctx.Err() == nil && !errors.Is(err, objstore.ErrNotFound) {
			s.damaged(&rep, url, "chunk", c.Key, err)
			if s.copyFromPeer(ctx, url, c.Key, s.chunkCheck(c.Addr)) {
				s.repaired(&rep, url, "chunk", "copied")
			} else {
				if err := store.Delete(ctx, c.Key); err != nil {
					return rep, fmt.Errorf("delete damaged %s: %w", c.Key, err)
				}
				lostChunks = true
			}
		}
		if !pace(time.Since(start)) {
			return rep, ctx.Err()
		}
	}
	for _, p := range l.Packs {
		start := time.Now()
		n, err := snapshot.CheckPack(ctx, store, p.ID, inPack[p.ID], s.o.Keys)
		rep.Checked++
		rep.Bytes += n
		s.o.Metrics.checked(url, "pack", n)
		if err != nil && ctx.Err() == nil && !errors.Is(err, objstore.ErrNotFound) {
			s.damaged(&rep, url, "pack", p.Key, err)
			if err := store.Delete(ctx, p.Key); err != nil {
				return rep, fmt.Errorf("delete damaged %s: %w", p.Key, err)
			}
			lostChunks = true
		}
		if !pace(time.Since(start)) {
			return rep, ctx.Err()
		}
	}
	// Change sets that no object holds any more, in the middle of the
	// chain, are lost too.
	if cat, err := restore.ReadCatalog(ctx, store); err == nil {
		var ce *restore.ChainError
		if errors.As(cat.Check(), &ce) && ce.Missing != nil && !covered(lostSets, ce.Missing.First) {
			r := ce.Missing
			// Named by the key a follower asks for next: where the
			// replicator stores a change set that starts there.
			s.damaged(&rep, url, "segment", layout.ChangeSetKey(r.First), fmt.Errorf("no change set holds txids %d-%d", r.First, r.Last))
			s.o.Repair.LostChangeSet(url, r.First, r.Last, "missing from the store")
			s.repaired(&rep, url, "segment", "gap")
		}
	}
	if lostChunks {
		s.o.Repair.RewriteChunks(url)
		s.repaired(&rep, url, "chunk", "snapshot")
	}
	return rep, nil
}

// covered reports whether one of sets holds txid.
func covered(sets []layout.Segment, txid uint64) bool {
	for _, s := range sets {
		if s.First <= txid && txid <= s.Last {
			return true
		}
	}
	return false
}

func (s *Scrubber) chunkCheck(a [32]byte) func([]byte) error {
	return func(data []byte) error { return snapshot.CheckChunkData(a, data, s.o.Keys) }
}

// copyFromPeer copies key from another target that holds it intact, as
// check says, and reports whether it did.
func (s *Scrubber) copyFromPeer(ctx context.Context, url, key string, check func([]byte) error) bool {
	for peer, ps := range s.o.Targets {
		if peer == url {
			continue
		}
		rc, _, err := ps.Get(ctx, key, nil)
		if err != nil {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxCopy+1))
		rc.Close()
		if err != nil || len(data) > maxCopy || check(data) != nil {
			continue
		}
		if _, err := s.o.Targets[url].Put(ctx, key, bytes.NewReader(data), objstore.PutOptions{}); err != nil {
			s.o.Log.Warn("scrub: copy from another target failed", "target", url, "from", peer, "key", key, "err", err)
			continue
		}
		s.o.Log.Info("scrub: copied an intact object from another target", "target", url, "from", peer, "key", key)
		return true
	}
	return false
}

// maxCopy bounds what the scrub holds in memory for one copied object;
// change sets are bounded far below it by the capture.
const maxCopy = 256 << 20

func (s *Scrubber) damaged(rep *Report, url, kind, key string, err error) {
	rep.Damaged = append(rep.Damaged, key+": "+err.Error())
	s.o.Metrics.damaged(url, kind)
	s.o.Log.Warn("scrub found a damaged object", "target", url, "key", key, "err", err)
}

func (s *Scrubber) repaired(rep *Report, url, kind, how string) {
	rep.Repaired++
	s.o.Metrics.repaired(url, kind, how)
}

// sleep waits d unless ctx ends first, and reports whether it did not.
func (s *Scrubber) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Metrics counts what scrubs find and do.
type Metrics struct {
	checks  *prometheus.CounterVec
	bytes   *prometheus.CounterVec
	damage  *prometheus.CounterVec
	repairs *prometheus.CounterVec
}

// NewMetrics registers the scrub's series in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		checks:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_scrub_objects_checked_total", Help: "Objects a scrub read and checked."}, []string{"target", "kind"}),
		bytes:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_scrub_bytes_read_total", Help: "Bytes a scrub read from the store."}, []string{"target"}),
		damage:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_scrub_damaged_total", Help: "Objects a scrub found missing or damaged."}, []string{"target", "kind"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_scrub_repaired_total", Help: "Repairs a scrub made: copied from another target, a gap recorded, or a snapshot asked for."}, []string{"target", "kind", "how"}),
	}
	reg.MustRegister(m.checks, m.bytes, m.damage, m.repairs)
	return m
}

func (m *Metrics) checked(url, kind string, n int64) {
	if m != nil {
		m.checks.WithLabelValues(url, kind).Inc()
		m.bytes.WithLabelValues(url).Add(float64(n))
	}
}

func (m *Metrics) damaged(url, kind string) {
	if m != nil {
		m.damage.WithLabelValues(url, kind).Inc()
	}
}

func (m *Metrics) repaired(url, kind, how string) {
	if m != nil {
		m.repairs.WithLabelValues(url, kind, how).Inc()
	}
}
