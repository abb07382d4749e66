// Package verify proves, on demand, that a replica restores: its snapshots
// and change sets form chains, every object they reference is present, and,
// in a deep check, every byte hashes to what was recorded when it was
// written. It names each missing or damaged object rather than stopping at
// the first, so an operator sees the whole extent of a problem at once.
package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// Problem is one object that would make a restore fail or stop short.
type Problem struct {
	Key    string `json:"key"`
	Kind   string `json:"kind"` // missing, corrupt or unreadable
	Detail string `json:"detail"`
}

// Report is what a verification found.
type Report struct {
	Snapshots int `json:"snapshots"`
	Segments  int `json:"segments"`
	Chunks    int `json:"chunks"`
	// Breaks counts break markers: each says that a chain of change sets
	// ended and a newer snapshot carries the replica on. No restore reads
	// them.
	Breaks int `json:"breaks"`
	// Ranges are the txids a restore reaches, counting none that a
	// missing or damaged object holds or that only such an object leads
	// to.
	Ranges []restore.Range `json:"restorable"`
	// Newest is the newest txid any object of the replica holds.
	Newest uint64 `json:"newest_txid"`
	// Unrestorable says why a restore cannot reach Newest: the replica is
	// empty, holds no usable snapshot, or its chain breaks with objects
	// past the break. Empty when Newest restores.
	Unrestorable string    `json:"unrestorable,omitempty"`
	Problems     []Problem `json:"problems"`
	// Foreign are objects in the replica's directories whose keys name
	// nothing of ferry's, such as a change set someone copied aside. No
	// restore reads them, so they are no problem; they are named so that
	// an operator sees everything the replica holds.
	Foreign []layout.Foreign `json:"foreign"`
}

// OK reports whether nothing is missing or damaged and the newest txid
// the replica holds restores.
func (r *Report) OK() bool { return len(r.Problems) == 0 && r.Unrestorable == "" }

// Run verifies the replica in store. It lists the replica once; with
// deep, it then downloads every snapshot's chunks and every segment and
// checks their hashes, and otherwise checks presence and sizes against the
// listing. Either way it then works out, as a restore would, which txids
// the objects found good reach, and whether they reach the newest txid
// held.
func Run(ctx context.Context, store objstore.Store, deep bool, keys snapshot.Keys) (Report, error) {
	rep := Report{Foreign: []layout.Foreign{}}
	l, err := layout.Read(ctx, store, layout.All, segment.Heads(store))
	if err != nil {
		return rep, err
	}
	for _, f := range l.Foreign {
		if f.Err != nil {
			// A change set of ours whose header is damaged, or does not
			// open with the keys given: a problem, not a stranger.
			rep.add(f.Key, f.Err)
			continue
		}
		rep.Foreign = append(rep.Foreign, f)
	}
	rep.Breaks = len(l.Breaks)
	infos, err := snapshot.Describe(ctx, store, l.Snapshots)
	if err != nil {
		return rep, err
	}
	held := make(map[string]int64, len(l.Chunks)+len(l.Packs))
	for _, c := range l.Chunks {
		held[c.Key] = c.Size
	}
	for _, p := range l.Packs {
		held[p.Key] = p.Size
	}
	// bad maps each manifest or segment no restore can use to why, so
	// that the restorable ranges leave out what depends on it.
	bad := map[string]string{}
	objects := map[string]bool{} // chunk and pack keys checked
	chunks := map[snapshot.Address]bool{}
	for _, info := range infos {
		rep.Snapshots++
		if info.Err != nil {
			rep.add(info.Key, info.Err)
			continue
		}
		m, err := snapshot.Load(ctx, store, info.TXID)
		if err != nil {
			rep.add(info.Key, err)
			bad[info.Key] = err.Error()
			continue
		}
		for _, a := range m.Chunks {
			chunks[a] = true
		}
		if why := rep.checkChunks(&m, held, objects); why != "" {
			bad[info.Key] = why
		}
		if deep {
			failed, err := snapshot.VerifyChunks(ctx, store, m, keys)
			if err != nil {
				return rep, err
			}
			for _, err := range failed {
				key := keyOf(err, info.Key)
				rep.add(key, err)
				if _, ok := bad[info.Key]; !ok && key != info.Key {
					bad[info.Key] = fmt.Sprintf("chunk %s is %s", key, rep.kindOf(key))
				} else if !ok {
					bad[info.Key] = rep.kindOf(key)
				}
			}
		}
	}
	rep.Chunks = len(chunks)

	cat, err := rep.checkSegments(ctx, store, infos, l.Segments, deep, bad)
	if err != nil {
		return rep, err
	}
	cat = cat.Without(bad)
	rep.Ranges = cat.Ranges()
	rep.noteRedundant(cat)
	rep.Newest = cat.Newest()
	if err := cat.Check(); err != nil {
		rep.Unrestorable = err.Error()
	}
	return rep, nil
}

// checkSegments checks each change set listed in segs: present and not
// empty, and with deep, intact end to end. It records problems, adds each
// change set no restore can use to bad, and returns the catalog the
// verdict is judged on.
//
// Change sets overlap where compaction merged small ones into one and has
// not deleted the small ones yet; each is checked on its own, and the
// catalog's chains prefer the merged one and fall back on the small ones,
// as a restore does, so the overlap itself is no problem. A change set
// that vanishes between the listing and its download is no problem either
// when a fresh listing no longer names it: compaction deleted it after
// storing a merged one, or gc after it expired. The verdict is then
// judged on the fresh listing, whose new change sets are checked too; a
// txid that nothing holds any more still shows as a hole.
func (rep *Report) checkSegments(ctx context.Context, store objstore.Store, infos []snapshot.ManifestInfo, segs []layout.Segment, deep bool, bad map[string]string) (restore.Catalog, error) {
	checked := map[string]bool{}
	for relisted := false; ; relisted = true {
		cat := restore.NewCatalog(infos, segs)
		vanished := false
		for _, s := range cat.Segments {
			if checked[s.Key] {
				continue
			}
			checked[s.Key] = true
			if s.Size <= 0 {
				rep.Problems = append(rep.Problems, Problem{Key: s.Key, Kind: "corrupt", Detail: "empty object"})
				bad[s.Key] = "empty object"
				continue
			}
			if !deep {
				continue
			}
			err := segment.Check(ctx, store, s.Key)
			if err == nil {
				continue
			}
			if objstore.IsNotFound(err) && !relisted {
				// Judged once the listing is read again, below.
				vanished = true
				delete(checked, s.Key)
				continue
			}
			rep.add(s.Key, err)
			bad[s.Key] = rep.kindOf(s.Key)
		}
		if !vanished {
			rep.Segments = len(cat.Segments)
			return cat, nil
		}
		l, err := layout.Read(ctx, store, layout.Segments, segment.Heads(store))
		if err != nil {
			return restore.Catalog{}, err
		}
		segs = l.Segments
	}
}

// noteRedundant says of each damaged change set whose every txid restores
// without it (a merged one whose small ones compaction has not deleted
// yet, or a small one a merged one holds) that nothing is lost: it is
// still damage, but not the kind that stops a restore.
func (rep *Report) noteRedundant(cat restore.Catalog) {
	for _, u := range cat.Unusable {
		if _, _, err := layout.ParseAnySegmentKey(u.Key); err != nil {
			continue
		}
		if !slices.ContainsFunc(rep.Ranges, func(r restore.Range) bool { return r.First <= u.First && u.Last <= r.Last }) {
			continue
		}
		for i := range rep.Problems {
			if rep.Problems[i].Key == u.Key {
				rep.Problems[i].Detail += "; other change sets hold its txids, which restore without it"
			}
		}
	}
}

// checkChunks confirms from the listing (held: key to size) that each
// chunk of m is present, loose or in its pack, recording each missing or
// short object, and says what is wrong with the first bad chunk of m (""
// when none is). An object that an earlier manifest shares is checked
// once, but its problem counts against every manifest naming it. seen
// collects the chunks found, by address.
func (rep *Report) checkChunks(m *snapshot.Manifest, held map[string]int64, seen map[string]bool) string {
	first := ""
	for i, a := range m.Chunks {
		key, want := snapshot.ChunkKey(a), int64(1)
		if l := m.Loc(i); l.Pack != snapshot.Loose {
			key, want = m.PackKey(l.Pack), int64(m.Packs[l.Pack].Size)
		}
		if !seen[key] {
			seen[key] = true
			switch size, ok := held[key]; {
			case !ok:
				rep.Problems = append(rep.Problems, Problem{Key: key, Kind: "missing", Detail: "not in the store's listing, named by " + m.Key()})
			case size < want || size <= 0:
				rep.Problems = append(rep.Problems, Problem{Key: key, Kind: "corrupt", Detail: fmt.Sprintf("%d bytes, named by %s as %d", size, m.Key(), want)})
			}
		}
		if kind := rep.kindOf(key); first == "" && kind != "" {
			first = fmt.Sprintf("chunk %s is %s", key, kind)
		}
	}
	return first
}

// kindOf is the kind of the first problem recorded for the object at key,
// "" when there is none.
func (rep *Report) kindOf(key string) string {
	for _, p := range rep.Problems {
		if p.Key == key {
			return p.Kind
		}
	}
	return ""
}

// add records a problem with the object at key, once: a chunk missing
// from its HEAD is missing from its GET too.
func (rep *Report) add(key string, err error) {
	kind := "unreadable"
	switch {
	case objstore.IsNotFound(err):
		kind = "missing"
	case errors.Is(err, objstore.ErrCorrupt):
		kind = "corrupt"
	}
	for _, p := range rep.Problems {
		if p.Key == key && p.Kind == kind {
			return
		}
	}
	rep.Problems = append(rep.Problems, Problem{Key: key, Kind: kind, Detail: err.Error()})
}

// keyOf names the object a snapshot's check failed on: the chunk, or the
// manifest itself when the failure was not a chunk's.
func keyOf(err error, manifestKey string) string {
	var ce *snapshot.ChunkError
	if errors.As(err, &ce) {
		return ce.Key
	}
	return manifestKey
}
