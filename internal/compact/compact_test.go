package compact_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/compact"
	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/verify"
)

// anyAge merges change sets however young: the tests' are seconds old.
var anyAge = compact.Options{MinAge: -1}

func run(t *testing.T, store objstore.Store, o compact.Options) compact.Report {
	t.Helper()
	rep, err := compact.Run(context.Background(), store, o)
	if err != nil {
		t.Fatalf("compact: %v", err)
	}
	return rep
}

func verifyDeep(t *testing.T, store objstore.Store) verify.Report {
	t.Helper()
	rep, err := verify.Run(context.Background(), store, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// Two hundred one-transaction change sets after a snapshot become one,
// holding the same transactions byte for byte, and every txid restores to
// the database that was committed.
func TestCompactKeepsEveryTXID(t *testing.T) {
	store, _ := fileStore(t)
	h := build(t, store, 1, 200)
	before := records(t, store, segments(t, store))
	// Before compaction, a sample: each restore reads up to 200 objects.
	for _, i := range []int{0, 1, 57, 133, 200} {
		if got, _ := restoreSum(t, store, h.base+uint64(i)); got != h.sums[i] {
			t.Fatalf("before compaction, txid %d restores to another database", h.base+uint64(i))
		}
	}

	rep := run(t, store, anyAge)
	want := layout.SegmentKey(2, 201)
	if len(rep.Merged) != 1 || rep.Merged[0].Key != want || rep.Merged[0].Replaces != 200 || len(rep.Deleted) != 200 || len(rep.Damaged) != 0 {
		t.Fatalf("report %+v; want %s replacing 200", rep, want)
	}
	segs := segments(t, store)
	if len(segs) != 1 || segs[0].Key != want {
		t.Fatalf("change sets after compaction: %v", segs)
	}
	if after := records(t, store, segs); !reflect.DeepEqual(after, before) {
		t.Fatal("the merged change set holds other transactions than the small ones did")
	}
	checkEveryTXID(t, store, h)
	if _, n := restoreSum(t, store, 0); n != 1 {
		t.Fatalf("the latest restore reads %d change sets, want 1", n)
	}
	if v := verifyDeep(t, store); !v.OK() || v.Segments != 1 || len(v.Ranges) != 1 || v.Ranges[0] != (restore.Range{First: 1, Last: 201}) {
		t.Fatalf("verify -deep after compaction: %+v", v)
	}
	if rep := run(t, store, anyAge); len(rep.Merged) != 0 || len(rep.Deleted) != 0 {
		t.Fatalf("a second run over a compacted replica did %+v", rep)
	}
}

// snapshotAt stores a snapshot of the database at txid, restored from the
// replica itself, committed at when.
func snapshotAt(t *testing.T, store objstore.Store, txid uint64, when time.Time) {
	t.Helper()
	ctx := context.Background()
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := cat.PlanTXID(txid)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "snap.db")
	if _, err := restore.ToFile(ctx, store, plan, out, restore.Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := snapshot.Write(ctx, store, bytes.NewReader(b), pageSize, uint32(len(b)/pageSize), txid, when, snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
}

func keys(segs []layout.Segment) []string {
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = s.Key
	}
	return out
}

func mergedKeys(rep compact.Report) []string {
	var out []string
	for _, m := range rep.Merged {
		out = append(out, m.Key)
	}
	return out
}

// Runs stop at holes and at snapshots, leave change sets before the
// oldest snapshot and young ones alone, and stay under the target size.
func TestWhichChangeSetsMerge(t *testing.T) {
	t.Run("holes and snapshots split runs", func(t *testing.T) {
		store, _ := fileStore(t)
		h := build(t, store, 1, 60)
		snapshotAt(t, store, 31, t0.Add(31*time.Second))
		if err := store.Delete(context.Background(), layout.SegmentKey(45, 45)); err != nil {
			t.Fatal(err)
		}
		rep := run(t, store, anyAge)
		want := []string{layout.SegmentKey(2, 31), layout.SegmentKey(32, 44), layout.SegmentKey(46, 61)}
		if got := keys(segments(t, store)); !reflect.DeepEqual(got, want) {
			t.Fatalf("change sets %v, want %v (report %+v)", got, want, rep)
		}
		for i := 0; i <= 43; i++ {
			if got, _ := restoreSum(t, store, h.base+uint64(i)); got != h.sums[i] {
				t.Fatalf("txid %d restores to another database", h.base+uint64(i))
			}
		}
	})

	t.Run("before the oldest snapshot", func(t *testing.T) {
		store, _ := fileStore(t)
		build(t, store, 1, 40)
		snapshotAt(t, store, 21, t0.Add(21*time.Second))
		if err := store.Delete(context.Background(), layout.ManifestKey(1)); err != nil {
			t.Fatal(err)
		}
		run(t, store, anyAge)
		segs := segments(t, store)
		if len(segs) != 21 || segs[19].Key != layout.SegmentKey(21, 21) || segs[20].Key != layout.SegmentKey(22, 41) {
			t.Fatalf("change sets %v; want 2..21 left alone and 22-41 merged", keys(segs))
		}
	})

	t.Run("young change sets", func(t *testing.T) {
		store, root := fileStore(t)
		build(t, store, 1, 40)
		if rep := run(t, store, compact.Options{}); len(rep.Merged) != 0 || len(segments(t, store)) != 40 {
			t.Fatalf("the default minimum age merged change sets written just now: %+v", rep)
		}
		old := time.Now().Add(-time.Hour)
		for txid := uint64(2); txid <= 30; txid++ {
			path := filepath.Join(root, filepath.FromSlash(layout.SegmentKey(txid, txid)))
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
		}
		rep := run(t, store, compact.Options{MinAge: 30 * time.Minute})
		if got := mergedKeys(rep); !reflect.DeepEqual(got, []string{layout.SegmentKey(2, 30)}) {
			t.Fatalf("merged %v; want only the change sets an hour old", got)
		}
	})

	t.Run("target size", func(t *testing.T) {
		store, _ := fileStore(t)
		h := build(t, store, 1, 90)
		var total int64
		for _, s := range segments(t, store) {
			total += s.Size
		}
		target := total / 3
		rep := run(t, store, compact.Options{MinAge: -1, TargetBytes: target})
		segs := segments(t, store)
		if len(rep.Merged) < 3 || len(segs) > 6 {
			t.Fatalf("target %d of %d bytes: merged %+v, left %v", target, total, rep.Merged, keys(segs))
		}
		for i := 1; i < len(segs); i++ {
			if segs[i].First != segs[i-1].Last+1 {
				t.Fatalf("change sets %v are not contiguous", keys(segs))
			}
		}
		for _, m := range rep.Merged {
			if m.Size > target+target/4 {
				t.Errorf("%s is %d bytes, target %d", m.Key, m.Size, target)
			}
		}
		if got, _ := restoreSum(t, store, 0); got != h.sums[len(h.sums)-1] {
			t.Fatal("the latest state restores to another database")
		}
	})

	t.Run("a damaged change set splits its run", func(t *testing.T) {
		store, root := fileStore(t)
		build(t, store, 1, 40)
		bad := layout.SegmentKey(20, 20)
		corrupt(t, root, bad)
		rep := run(t, store, anyAge)
		if len(rep.Damaged) != 1 || rep.Damaged[0].Key != bad {
			t.Fatalf("damaged %+v, want %s", rep.Damaged, bad)
		}
		want := []string{layout.SegmentKey(2, 19), bad, layout.SegmentKey(21, 41)}
		if got := keys(segments(t, store)); !reflect.DeepEqual(got, want) {
			t.Fatalf("change sets %v, want %v", got, want)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		store, _ := fileStore(t)
		build(t, store, 1, 20)
		rep := run(t, store, compact.Options{MinAge: -1, DryRun: true})
		if !rep.DryRun || len(rep.Merged) != 1 || len(rep.Deleted) != 20 || len(segments(t, store)) != 20 {
			t.Fatalf("dry run: %+v, and the replica holds %d change sets", rep, len(segments(t, store)))
		}
	})
}

// Killed after storing the merged change set and before deleting the
// small ones: every txid still restores (from the merged one), verify
// finds nothing wrong, and the next run deletes the small ones.
func TestKilledBeforeDeleting(t *testing.T) {
	store, _ := fileStore(t)
	h := build(t, store, 1, 100)
	if _, err := compact.Run(context.Background(), failDeletes{store}, anyAge); err == nil {
		t.Fatal("compaction with failing deletes reported no error")
	}
	if n := len(segments(t, store)); n != 101 {
		t.Fatalf("%d change sets, want the 100 small ones and the merged one", n)
	}
	checkEveryTXID(t, store, h)
	if _, n := restoreSum(t, store, 0); n != 1 {
		t.Fatalf("with both present, the latest restore reads %d change sets, want the merged one alone", n)
	}
	if v := verifyDeep(t, store); !v.OK() || v.Segments != 101 {
		t.Fatalf("verify -deep with overlapping change sets: %+v", v)
	}

	rep := run(t, store, anyAge)
	if len(rep.Merged) != 0 || len(rep.Deleted) != 100 || len(rep.Damaged) != 0 {
		t.Fatalf("the run after the kill: %+v; want the 100 small ones deleted", rep)
	}
	if segs := segments(t, store); len(segs) != 1 {
		t.Fatalf("change sets %v", keys(segs))
	}
	for _, i := range []int{0, 1, 50, 99, 100} {
		if got, _ := restoreSum(t, store, h.base+uint64(i)); got != h.sums[i] {
			t.Fatalf("txid %d restores to another database", h.base+uint64(i))
		}
	}
}

// A damaged merged change set, with the small ones still there: restores
// fall back on the small ones, verify names the damage but finds every
// txid restorable, and compaction leaves it all alone.
func TestDamagedMergedFallsBack(t *testing.T) {
	store, root := fileStore(t)
	h := build(t, store, 1, 60)
	if _, err := compact.Run(context.Background(), failDeletes{store}, anyAge); err == nil {
		t.Fatal("compaction with failing deletes reported no error")
	}
	merged := layout.SegmentKey(2, 61)
	corrupt(t, root, merged)

	checkEveryTXID(t, store, h)

	v := verifyDeep(t, store)
	if v.OK() || len(v.Problems) != 1 || v.Problems[0].Key != merged || v.Problems[0].Kind != "corrupt" ||
		!strings.Contains(v.Problems[0].Detail, "restore without it") {
		t.Fatalf("verify -deep: problems %+v; want %s corrupt, its txids held elsewhere", v.Problems, merged)
	}
	if v.Unrestorable != "" || len(v.Ranges) != 1 || v.Ranges[0] != (restore.Range{First: 1, Last: 61}) {
		t.Fatalf("verify -deep: restorable %v, unrestorable %q; want every txid", v.Ranges, v.Unrestorable)
	}

	rep := run(t, store, anyAge)
	if len(rep.Damaged) != 1 || rep.Damaged[0].Key != merged || len(rep.Deleted) != 0 || len(rep.Merged) != 0 {
		t.Fatalf("compaction over a damaged merged change set: %+v", rep)
	}
	if n := len(segments(t, store)); n != 61 {
		t.Fatalf("%d change sets; want all 61 kept", n)
	}
}

// A restore planned before compaction finds its change sets deleted under
// it, and re-plans onto the merged one.
func TestRestoreInFlightReplans(t *testing.T) {
	store, _ := fileStore(t)
	h := build(t, store, 1, 50)
	ctx := context.Background()
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := cat.PlanTXID(0)
	if err != nil || len(plan.Segments) != 50 {
		t.Fatalf("plan: %d change sets, %v", len(plan.Segments), err)
	}
	// Compaction lands between the plan and the restore's first fetch.
	var applied int
	out := filepath.Join(t.TempDir(), "out.db")
	compacted := false
	res, err := restore.ToFile(ctx, &compactBeforeGet{Store: store, t: t, done: &compacted}, plan, out, restore.Options{
		Progress: func(n, total int) { applied = n },
	})
	if err != nil || res.TXID != 51 {
		t.Fatalf("restore across a compaction: txid %d, %v", res.TXID, err)
	}
	if applied != 1 {
		t.Fatalf("applied %d change sets; want the merged one", applied)
	}
	b, _ := os.ReadFile(out)
	if sha256.Sum256(b) != h.sums[50] {
		t.Fatal("the restore across a compaction holds another database")
	}
}

// compactBeforeGet compacts its store before the first change set is
// fetched.
type compactBeforeGet struct {
	objstore.Store
	t    *testing.T
	done *bool
}

func (s *compactBeforeGet) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if _, _, err := layout.ParseAnySegmentKey(key); err == nil && !*s.done {
		*s.done = true
		if _, err := compact.Run(ctx, s.Store, anyAge); err != nil {
			s.t.Errorf("compact: %v", err)
		}
	}
	return s.Store.Get(ctx, key, rng)
}

// Change sets that another lies within are settled: those it holds
// identically are deleted, one it holds differently is kept and reported,
// and so is the longer one.
func TestSettleOverlaps(t *testing.T) {
	store, _ := fileStore(t)
	h := build(t, store, 1, 20)
	var same []txn
	for txid := uint64(2); txid <= 6; txid++ {
		same = append(same, txnsOf(t, store, layout.SegmentKey(txid, txid))...)
	}
	putSegment(t, store, 2, 6, same) // captured again after a crash
	var other []txn
	for txid := uint64(7); txid <= 10; txid++ {
		other = append(other, txnsOf(t, store, layout.SegmentKey(txid, txid))...)
	}
	other[1].time = other[1].time.Add(time.Millisecond) // txid 8
	putSegment(t, store, 7, 10, other)
	// Partly overlapping: neither lies within the other.
	putSegment(t, store, 12, 13, append(txnsOf(t, store, layout.SegmentKey(12, 12)), txnsOf(t, store, layout.SegmentKey(13, 13))...))
	var tail []txn
	for txid := uint64(13); txid <= 14; txid++ {
		tail = append(tail, txnsOf(t, store, layout.SegmentKey(txid, txid))...)
	}
	putSegment(t, store, 13, 14, tail)

	// A minimum age no change set has: only overlaps are settled.
	rep := run(t, store, compact.Options{MinAge: time.Hour})
	var deleted []string
	for _, d := range rep.Deleted {
		deleted = append(deleted, d.Key)
	}
	wantDeleted := []string{
		layout.SegmentKey(2, 2), layout.SegmentKey(3, 3), layout.SegmentKey(4, 4), layout.SegmentKey(5, 5), layout.SegmentKey(6, 6),
		layout.SegmentKey(7, 7), layout.SegmentKey(9, 9), layout.SegmentKey(10, 10),
		layout.SegmentKey(12, 12), layout.SegmentKey(13, 13), layout.SegmentKey(14, 14),
	}
	if !reflect.DeepEqual(deleted, wantDeleted) {
		t.Fatalf("deleted %v, want %v", deleted, wantDeleted)
	}
	if len(rep.Damaged) != 1 || rep.Damaged[0].Key != layout.SegmentKey(8, 8) || !strings.Contains(rep.Damaged[0].Why, "disagree") {
		t.Fatalf("damaged %+v; want %s, which 7-10 holds differently", rep.Damaged, layout.SegmentKey(8, 8))
	}
	for i := range h.sums {
		if got, _ := restoreSum(t, store, h.base+uint64(i)); got != h.sums[i] {
			t.Fatalf("txid %d restores to another database", h.base+uint64(i))
		}
	}
}

// The same on a real S3 server.
func TestCompactS3(t *testing.T) {
	store := s3Store(t)
	h := build(t, store, 1, 40)
	rep := run(t, store, anyAge)
	if len(rep.Merged) != 1 || len(rep.Deleted) != 40 || len(segments(t, store)) != 1 {
		t.Fatalf("report %+v", rep)
	}
	checkEveryTXID(t, store, h)
	if v := verifyDeep(t, store); !v.OK() {
		t.Fatalf("verify -deep: %+v", v)
	}
}
