package restore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// putRange stores one change set holding versions first..last of vs (each
// the database after txid base+i), as compaction would merge them.
func putRange(t *testing.T, store objstore.Store, vs [][]byte, base uint64, first, last int) string {
	t.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{PageSize: pageSize, First: base + uint64(first), Last: base + uint64(last)})
	if err != nil {
		t.Fatal(err)
	}
	for i := first; i <= last; i++ {
		prev, cur := vs[i-1], vs[i]
		if err := w.Begin(base+uint64(i), t0.Add(time.Duration(i)*time.Second), uint32(len(cur)/pageSize)); err != nil {
			t.Fatal(err)
		}
		for p := 0; p*pageSize < len(cur); p++ {
			page := cur[p*pageSize : (p+1)*pageSize]
			if (p+1)*pageSize > len(prev) || !bytes.Equal(page, prev[p*pageSize:(p+1)*pageSize]) {
				if err := w.Page(uint32(p+1), page); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	key := segment.Key(base+uint64(first), base+uint64(last))
	if _, err := store.Put(context.Background(), key, bytes.NewReader(buf.Bytes()), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	return key
}

func flip(t *testing.T, store *memstore.Store, key string) {
	t.Helper()
	rc, _, err := store.Get(context.Background(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	b[len(b)/2] ^= 0x40
	store.Corrupt(key, b)
}

func planKeys(p restore.Plan) []string {
	var out []string
	for _, s := range p.Segments {
		out = append(out, s.Key)
	}
	return out
}

// A merged change set beside the small ones it merges (compaction killed
// before deleting them) is no damage: the chain takes the merged one, and
// every txid restores.
func TestOverlapPrefersLongest(t *testing.T) {
	vs := versions(t, 12)
	store := memstore.New()
	publish(t, store, vs, 1, 1)               // snapshot at 1, one segment per txid 2..13
	merged := putRange(t, store, vs, 1, 1, 9) // txids 2-10
	t5 := time.Date(2026, 1, 1, 0, 0, 4, 0, time.UTC)
	if _, _, err := snapshot.Write(context.Background(), store, bytes.NewReader(vs[4]), pageSize, uint32(len(vs[4])/pageSize), 5, t5, snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
	cat := catalog(t, store)
	if err := cat.Check(); err != nil {
		t.Fatalf("Check with overlapping change sets: %v", err)
	}
	if r := cat.Ranges(); len(r) != 1 || r[0] != (restore.Range{First: 1, Last: 13}) {
		t.Fatalf("ranges %v", r)
	}
	plan, err := cat.PlanTXID(0)
	want := []string{merged, segment.Key(11, 11), segment.Key(12, 12), segment.Key(13, 13)}
	if err != nil || strings.Join(planKeys(plan), " ") != strings.Join(want, " ") {
		t.Fatalf("plan %v, %v; want %v", planKeys(plan), err, want)
	}
	// From the snapshot inside the merged range, the merged one is still
	// the longest step; its transactions before the snapshot are skipped.
	if plan, err := cat.PlanTXID(7); err != nil || plan.Snapshot.TXID != 5 || strings.Join(planKeys(plan), " ") != merged {
		t.Fatalf("plan of txid 7: from %d, %v, %v", plan.Snapshot.TXID, planKeys(plan), err)
	}
	for i := range vs {
		got, res, err := restoreTo(t, store, uint64(1+i), restore.Options{})
		if err != nil || !bytes.Equal(got, vs[i]) {
			t.Fatalf("txid %d: txid %d, %v", 1+i, res.TXID, err)
		}
	}
}

// Among change sets that reach equally far, the chain takes the one that
// starts latest: it downloads no transaction the restore skips.
func TestOverlapPrefersShortestOfEqualReach(t *testing.T) {
	vs := versions(t, 8)
	store := memstore.New()
	publish(t, store, vs, 1, 4) // segments 2-5, 6-9
	putRange(t, store, vs, 1, 1, 8)
	cat := catalog(t, store)
	plan, err := cat.PlanTXID(9)
	if err != nil || len(plan.Segments) != 1 || plan.Segments[0].Key != segment.Key(2, 9) {
		t.Fatalf("plan from the snapshot: %v, %v", planKeys(plan), err)
	}
}

// A damaged merged change set whose small ones still exist: a restore
// through it falls back on them, and so does the catalog once a check has
// found it damaged.
func TestDamagedMergedFallsBackToSmall(t *testing.T) {
	vs := versions(t, 12)
	store := memstore.New()
	publish(t, store, vs, 1, 1)
	merged := putRange(t, store, vs, 1, 1, 12)
	flip(t, store, merged)
	for i := range vs {
		got, res, err := restoreTo(t, store, uint64(1+i), restore.Options{})
		if err != nil || !bytes.Equal(got, vs[i]) {
			t.Fatalf("txid %d through a damaged merged change set: txid %d, %v", 1+i, res.TXID, err)
		}
	}
	cat := catalog(t, store).Without(map[string]string{merged: "corrupt"})
	if err := cat.Check(); err != nil || cat.Latest() != 13 {
		t.Fatalf("without the damaged merged change set: latest %d, %v", cat.Latest(), err)
	}
	// With nothing to fall back on, the damage stops the restore where it
	// is, as before.
	for txid := uint64(2); txid <= 13; txid++ {
		store.Delete(context.Background(), segment.Key(txid, txid))
	}
	var stopped *restore.StoppedError
	if _, _, err := restoreTo(t, store, 0, restore.Options{}); !errors.As(err, &stopped) || stopped.TXID != 1 || !strings.Contains(err.Error(), merged) {
		t.Fatalf("restore through the damaged change set alone: %v; want a StoppedError at txid 1 naming it", err)
	}
}

// gcStore deletes the keys in doomed, as compaction would, just before the
// first change set is fetched.
type gcStore struct {
	*memstore.Store
	doomed []string
	gets   []string
}

func (s *gcStore) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if _, _, err := layout.ParseAnySegmentKey(key); err == nil {
		s.gets = append(s.gets, key)
		if s.doomed != nil {
			s.Store.Delete(ctx, s.doomed...)
			s.doomed = nil
		}
	}
	return s.Store.Get(ctx, key, rng)
}

// A restore whose planned change sets are deleted under it, once a
// merged one holds their transactions, plans again from where it stands.
func TestRestoreReplansWhenChangeSetsGo(t *testing.T) {
	vs := versions(t, 12)
	store := memstore.New()
	publish(t, store, vs, 1, 1)
	cat := catalog(t, store)
	plan, err := cat.PlanTXID(0)
	if err != nil || len(plan.Segments) != 12 {
		t.Fatalf("plan: %v, %v", planKeys(plan), err)
	}
	merged := putRange(t, store, vs, 1, 4, 12)
	var doomed []string
	for txid := uint64(5); txid <= 13; txid++ {
		doomed = append(doomed, segment.Key(txid, txid))
	}
	gs := &gcStore{Store: store}
	var progress [][2]int
	out := filepath.Join(t.TempDir(), "out.db")
	// The first three apply as planned; the compaction lands before the
	// fourth is fetched.
	res, err := restore.ToFile(context.Background(), gs, plan, out, restore.Options{Progress: func(n, total int) {
		progress = append(progress, [2]int{n, total})
		if n == 3 {
			gs.doomed = doomed
		}
	}})
	if err != nil || res.TXID != 13 {
		t.Fatalf("restore with change sets deleted under it: txid %d, %v", res.TXID, err)
	}
	if want := []string{segment.Key(2, 2), segment.Key(3, 3), segment.Key(4, 4), segment.Key(5, 5), merged}; strings.Join(gs.gets, " ") != strings.Join(want, " ") {
		t.Fatalf("fetched %v, want %v", gs.gets, want)
	}
	if last := progress[len(progress)-1]; last != [2]int{4, 4} {
		t.Fatalf("progress %v; want it to end at 4 of 4", progress)
	}

	// Deleted with nothing in their place, they stop the restore.
	plan, err = catalog(t, store).PlanTXID(0)
	if err != nil {
		t.Fatal(err)
	}
	gs = &gcStore{Store: store, doomed: []string{merged}}
	_, err = restore.ToFile(context.Background(), gs, plan, filepath.Join(t.TempDir(), "out.db"), restore.Options{})
	var stopped *restore.StoppedError
	if !errors.As(err, &stopped) || !objstore.IsNotFound(err) {
		t.Fatalf("restore with its change set deleted and no other: %v", err)
	}
}

// A replica holds a change set per sync interval: 72 hours of one a second
// is a quarter of a million, plus what compaction merged beside them.
// Planning over that must not take time quadratic in it.
func TestPlanOverManyChangeSets(t *testing.T) {
	const n = 250_000
	segs := make([]layout.Segment, 0, n+n/1000)
	for txid := uint64(2); txid < n+2; txid++ {
		segs = append(segs, layout.Segment{Key: segment.Key(txid, txid), First: txid, Last: txid, Size: 1})
	}
	for first := uint64(2); first+999 < n+2; first += 1000 {
		segs = append(segs, layout.Segment{Key: segment.Key(first, first+999), First: first, Last: first + 999, Size: 1})
	}
	var snaps []snapshot.ManifestInfo
	for txid := uint64(1); txid < n; txid += 3600 {
		snaps = append(snaps, snapshot.ManifestInfo{Key: layout.ManifestKey(txid), TXID: txid, PageSize: pageSize, PageCount: 1})
	}
	start := time.Now()
	cat := restore.NewCatalog(snaps, segs)
	if err := cat.Check(); err != nil {
		t.Fatal(err)
	}
	plan, err := cat.PlanTXID(0)
	if err != nil || plan.TXID != n+1 {
		t.Fatalf("plan: txid %d, %v", plan.TXID, err)
	}
	// From the newest snapshot, the merged change sets carry the chain
	// where they reach, the small ones the rest.
	if len(plan.Segments) > 1000+999 {
		t.Fatalf("plan of %d change sets", len(plan.Segments))
	}
	if _, err := cat.PlanTXID(n / 2); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("planning over %d change sets took %s", len(segs), d)
	}
}
