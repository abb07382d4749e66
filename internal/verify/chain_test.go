package verify_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/verify"
)

// runBoth verifies store shallow and deep and returns both reports.
func runBoth(t *testing.T, store *memstore.Store) [2]verify.Report {
	t.Helper()
	var out [2]verify.Report
	for i, deep := range []bool{false, true} {
		rep, err := verify.Run(context.Background(), store, deep, nil)
		if err != nil {
			t.Fatalf("deep=%v: %v", deep, err)
		}
		out[i] = rep
	}
	return out
}

// Every object that is there can be intact while the replica still cannot
// restore its newest state: a change set deleted from the middle, a
// manifest deleted with its change sets left behind, nothing at all. Each
// must fail verification, shallow and deep, and say why.
func TestReplicaThatCannotRestoreItsNewestTXID(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(*memstore.Store)
		want   string
		ranges []restore.Range
	}{
		{"deleted middle segment", func(s *memstore.Store) { s.Delete(context.Background(), segment.Key(5, 7)) },
			"txids 5-7 are missing", []restore.Range{{First: 1, Last: 4}}},
		{"deleted manifest", func(s *memstore.Store) { s.Delete(context.Background(), snapshot.ManifestKey(1)) },
			"no snapshot", nil},
		{"nothing there", func(s *memstore.Store) {
			var keys []string
			for info, err := range s.List(context.Background(), "") {
				if err != nil {
					panic(err)
				}
				keys = append(keys, info.Key)
			}
			for _, k := range keys {
				s.Delete(context.Background(), k)
			}
		}, "replica is empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, _ := replica(t)
			tc.damage(store)
			for i, rep := range runBoth(t, store) {
				if rep.OK() {
					t.Fatalf("deep=%v: OK for a replica that cannot restore its newest txid: %+v", i == 1, rep)
				}
				if !strings.Contains(rep.Unrestorable, tc.want) {
					t.Errorf("deep=%v: unrestorable %q does not say %q", i == 1, rep.Unrestorable, tc.want)
				}
				if len(rep.Ranges) != len(tc.ranges) || (len(tc.ranges) > 0 && rep.Ranges[0] != tc.ranges[0]) {
					t.Errorf("deep=%v: restorable %v, want %v", i == 1, rep.Ranges, tc.ranges)
				}
			}
		})
	}
}

// A gap ferry recorded, with a newer snapshot re-establishing the chain,
// restores the newest txid: verification passes.
func TestRecordedGapVerifies(t *testing.T) {
	store, _ := replica(t)
	ctx := context.Background()
	store.Delete(ctx, segment.Key(5, 7))
	img := make([]byte, 1<<20)
	rand.Read(img)
	if _, _, err := snapshot.Write(ctx, store, bytes.NewReader(img), pageSize, uint32(len(img)/pageSize), 8, time.Now(), snapshot.Options{}); err != nil {
		t.Fatal(err)
	}
	for i, rep := range runBoth(t, store) {
		if !rep.OK() || len(rep.Ranges) != 2 || rep.Ranges[1] != (restore.Range{First: 8, Last: 10}) {
			t.Fatalf("deep=%v: %+v", i == 1, rep)
		}
	}
}

// A deep check that finds a change set damaged must not count the txids
// it holds, nor any after it that only it leads to, as restorable.
func TestDeepCheckDoesNotCountDamagedTXIDs(t *testing.T) {
	store, _ := replica(t)
	bad := segment.Key(5, 7)
	b := read(t, store, bad)
	b[len(b)-20] ^= 0x04
	store.Corrupt(bad, b)
	rep, err := verify.Run(context.Background(), store, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !named(rep, bad, "corrupt") {
		t.Fatalf("deep check of a flipped segment: %+v", rep)
	}
	if len(rep.Ranges) != 1 || rep.Ranges[0] != (restore.Range{First: 1, Last: 4}) {
		t.Fatalf("restorable %v with %s damaged; want [{1 4}]", rep.Ranges, bad)
	}
	if !strings.Contains(rep.Unrestorable, bad) {
		t.Fatalf("unrestorable %q does not name %s", rep.Unrestorable, bad)
	}
}

// A snapshot with a missing chunk restores nothing: the txids only it
// reaches are not restorable, even to a shallow check.
func TestMissingChunkMakesSnapshotUnusable(t *testing.T) {
	store, m := replica(t)
	store.Delete(context.Background(), m.PackKey(m.Locs[5].Pack))
	for i, rep := range runBoth(t, store) {
		if rep.OK() || len(rep.Ranges) != 0 || !strings.Contains(rep.Unrestorable, m.Key()) {
			t.Fatalf("deep=%v: %+v", i == 1, rep)
		}
	}
}

// Snapshots share packs of chunks that did not change between them; a
// pack missing from one is missing from every snapshot naming it, though
// it is looked up once.
func TestSharedMissingChunkCountsForEverySnapshot(t *testing.T) {
	store := memstore.New()
	ctx := context.Background()
	img := make([]byte, 256<<10)
	rand.Read(img)
	m1, _, err := snapshot.Write(ctx, store, bytes.NewReader(img), pageSize, uint32(len(img)/pageSize), 1, time.Now(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing changed: the second snapshot names the first one's pack.
	if _, _, err := snapshot.Write(ctx, store, bytes.NewReader(img), pageSize, uint32(len(img)/pageSize), 2, time.Now(), snapshot.Options{Previous: &m1, Dirty: snapshot.ChunkSet{}}); err != nil {
		t.Fatal(err)
	}
	store.Delete(ctx, m1.PackKey(0))
	for i, rep := range runBoth(t, store) {
		if rep.OK() || len(rep.Ranges) != 0 {
			t.Fatalf("deep=%v: a chunk both snapshots name is missing, yet restorable %v: %+v", i == 1, rep.Ranges, rep)
		}
	}
}
