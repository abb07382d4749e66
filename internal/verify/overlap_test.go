package verify_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/verify"
)

// merge stores one change set holding the transactions of the replica's
// three (2-4, 5-7, 8-10), as compaction would, and returns its key.
func merge(t *testing.T, store *memstore.Store) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := segment.NewWriter(&buf, segment.Header{PageSize: pageSize, First: 2, Last: 10})
	if err != nil {
		t.Fatal(err)
	}
	for first := uint64(2); first <= 8; first += 3 {
		r, err := segment.NewReader(bytes.NewReader(read(t, store, segment.Key(first, first+2))), segment.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for {
			txn, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			w.Begin(txn.TXID, txn.Time, txn.DBSize)
			for {
				p, err := r.NextPage()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				w.Page(p.Pgno, p.Data)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		r.Close()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	key := segment.Key(2, 10)
	if _, err := store.Put(context.Background(), key, bytes.NewReader(buf.Bytes()), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	return key
}

func flip(t *testing.T, store *memstore.Store, key string) {
	t.Helper()
	b := read(t, store, key)
	b[len(b)/2] ^= 0x08
	store.Corrupt(key, b)
}

// A merged change set beside the ones it merges, as compaction leaves
// them when killed before deleting, is no problem.
func TestOverlapVerifies(t *testing.T) {
	store, _ := replica(t)
	merge(t, store)
	for i, rep := range runBoth(t, store) {
		if !rep.OK() || rep.Segments != 4 || len(rep.Ranges) != 1 || rep.Ranges[0] != (restore.Range{First: 1, Last: 10}) {
			t.Fatalf("deep=%v: %+v", i == 1, rep)
		}
	}
}

// Damage to either side of an overlap is named, and said to cost no txid
// while the other side holds it; the newest txid still restores.
func TestDamageWithinOverlap(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  func(merged string) string
	}{
		{"merged", func(merged string) string { return merged }},
		{"small", func(string) string { return segment.Key(5, 7) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, _ := replica(t)
			bad := tc.bad(merge(t, store))
			flip(t, store, bad)
			rep, err := verify.Run(context.Background(), store, true, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || len(rep.Problems) != 1 || rep.Problems[0].Key != bad || !strings.Contains(rep.Problems[0].Detail, "restore without it") {
				t.Fatalf("problems %+v; want %s, its txids held elsewhere", rep.Problems, bad)
			}
			if rep.Unrestorable != "" || len(rep.Ranges) != 1 || rep.Ranges[0] != (restore.Range{First: 1, Last: 10}) {
				t.Fatalf("restorable %v, unrestorable %q", rep.Ranges, rep.Unrestorable)
			}
		})
	}
	// Without the overlap, the same damage costs txids, and is not said
	// to be harmless.
	store, _ := replica(t)
	flip(t, store, segment.Key(5, 7))
	rep, _ := verify.Run(context.Background(), store, true, nil)
	if len(rep.Problems) != 1 || strings.Contains(rep.Problems[0].Detail, "restore without it") {
		t.Fatalf("problems %+v", rep.Problems)
	}
}

// compactingStore deletes doomed when the first change set is fetched,
// after verify has listed the replica: a compaction finishing.
type compactingStore struct {
	*memstore.Store
	doomed []string
}

func (s *compactingStore) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if _, _, err := layout.ParseAnySegmentKey(key); err == nil && s.doomed != nil {
		s.Store.Delete(ctx, s.doomed...)
		s.doomed = nil
	}
	return s.Store.Get(ctx, key, rng)
}

// Change sets that go while verify runs, because a merged one holds their
// transactions, are not missing: verify judges the listing as it is now.
// One that goes with nothing in its place is.
func TestChangeSetsGoneWhileVerifying(t *testing.T) {
	store, _ := replica(t)
	merge(t, store)
	small := []string{segment.Key(2, 4), segment.Key(5, 7), segment.Key(8, 10)}
	rep, err := verify.Run(context.Background(), &compactingStore{Store: store, doomed: small}, true, nil)
	if err != nil || !rep.OK() || rep.Segments != 1 || rep.Ranges[0] != (restore.Range{First: 1, Last: 10}) {
		t.Fatalf("verify across a compaction: %+v, %v", rep, err)
	}

	store, _ = replica(t)
	rep, err = verify.Run(context.Background(), &compactingStore{Store: store, doomed: small[1:2]}, true, nil)
	if err != nil || rep.OK() || !strings.Contains(rep.Unrestorable, "txids 5-7 are missing") {
		t.Fatalf("verify with a change set deleted and nothing in its place: %+v, %v", rep, err)
	}
}
