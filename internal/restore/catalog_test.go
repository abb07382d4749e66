package restore_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// Objects whose keys name nothing of ferry's play no part in a restore:
// a copy of a change set someone left behind, or a key that only looks
// like one of a newer txid, must neither join a chain nor count as held
// (which would make the newest state look unrestorable).
func TestCatalogIgnoresForeignKeys(t *testing.T) {
	vs := versions(t, 6)
	store := memstore.New()
	publish(t, store, vs, 1, 3) // snapshot at 1, segments 2-4 and 5-7
	for _, key := range []string{
		layout.SegmentKey(5, 7) + ".bak",
		"segments/0000000000000063-0000000000000062.seg",
		"segments/0000000000000063-00000000000000FF.seg",
		"snapshots/0000000000000063.manifest.tmp",
		"snapshots/notes.txt",
	} {
		if _, err := store.Put(context.Background(), key, bytes.NewReader([]byte("x")), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cat := catalog(t, store)
	if len(cat.Snapshots) != 1 || len(cat.Segments) != 2 || len(cat.Unusable) != 0 {
		t.Fatalf("catalog = %+v", cat)
	}
	if err := cat.Check(); err != nil || cat.Newest() != 7 || cat.Latest() != 7 {
		t.Fatalf("newest %d, latest %d, check %v; want 7, 7, nil", cat.Newest(), cat.Latest(), err)
	}
}

// NewCatalog builds from a listing the caller holds, as verify does, the
// same catalog ReadCatalog reads.
func TestNewCatalogFromListing(t *testing.T) {
	vs := versions(t, 6)
	store := memstore.New()
	publish(t, store, vs, 1, 3)
	ctx := context.Background()
	l, err := layout.Read(ctx, store, layout.All, segment.Heads(store))
	if err != nil {
		t.Fatal(err)
	}
	// Out of order, as a caller may have filtered or merged them.
	l.Segments[0], l.Segments[1] = l.Segments[1], l.Segments[0]
	snaps, err := snapshot.Describe(ctx, store, l.Snapshots)
	if err != nil {
		t.Fatal(err)
	}
	got, want := restore.NewCatalog(snaps, l.Segments), catalog(t, store)
	plan1, err1 := got.PlanTXID(0)
	plan2, err2 := want.PlanTXID(0)
	if err1 != nil || err2 != nil || plan1.TXID != 7 || len(plan1.Segments) != 2 || plan1.Segments[0] != plan2.Segments[0] {
		t.Fatalf("plans %+v, %v and %+v, %v differ", plan1, err1, plan2, err2)
	}
}
