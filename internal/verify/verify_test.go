package verify_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"iter"
	"slices"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/verify"
)

const pageSize = 4096

// replica stores a 1 MiB snapshot at txid 1 and three segments after it.
func replica(t *testing.T) (*memstore.Store, snapshot.Manifest) {
	t.Helper()
	store := memstore.New()
	ctx := context.Background()
	img := make([]byte, 1<<20)
	rand.Read(img)
	// A pack for every chunk or two, so that damage to one spares others.
	m, _, err := snapshot.Write(ctx, store, bytes.NewReader(img), pageSize, uint32(len(img)/pageSize), 1, time.Now(), snapshot.Options{PackBytes: snapshot.ChunkSize + 1})
	if err != nil {
		t.Fatal(err)
	}
	for first := uint64(2); first <= 8; first += 3 {
		var buf bytes.Buffer
		w, err := segment.NewWriter(&buf, segment.Header{PageSize: pageSize, First: first, Last: first + 2})
		if err != nil {
			t.Fatal(err)
		}
		for txid := first; txid <= first+2; txid++ {
			w.Begin(txid, time.Now(), 256)
			page := make([]byte, pageSize)
			rand.Read(page)
			w.Page(uint32(txid), page)
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Put(ctx, segment.Key(first, first+2), bytes.NewReader(buf.Bytes()), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return store, m
}

func read(t *testing.T, s objstore.Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIntactReplica(t *testing.T) {
	store, _ := replica(t)
	for _, deep := range []bool{false, true} {
		rep, err := verify.Run(context.Background(), store, deep, nil)
		if err != nil || !rep.OK() {
			t.Fatalf("deep=%v: %+v, %v", deep, rep.Problems, err)
		}
		if rep.Snapshots != 1 || rep.Segments != 3 || rep.Chunks != 16 || len(rep.Ranges) != 1 || rep.Ranges[0].Last != 10 {
			t.Fatalf("deep=%v: report %+v", deep, rep)
		}
	}
}

func TestEachDamagedObjectIsNamed(t *testing.T) {
	store, m := replica(t)
	ctx := context.Background()
	flipped := m.PackKey(m.Locs[3].Pack)
	b := read(t, store, flipped)
	b[m.Locs[3].Offset+m.Locs[3].Length/2] ^= 1
	store.Corrupt(flipped, b)
	deleted := m.PackKey(m.Locs[7].Pack)
	if deleted == flipped {
		t.Fatalf("chunks 3 and 7 share %s", deleted)
	}
	store.Delete(ctx, deleted)
	badSeg := segment.Key(2, 4)
	s := read(t, store, badSeg)
	s[60] ^= 0x80
	store.Corrupt(badSeg, s)
	cutSeg := segment.Key(5, 7)
	store.Corrupt(cutSeg, read(t, store, cutSeg)[:50])

	shallow, err := verify.Run(ctx, store, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !named(shallow, deleted, "missing") {
		t.Fatalf("shallow check did not name the deleted chunk: %+v", shallow.Problems)
	}
	deep, err := verify.Run(ctx, store, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for key, kind := range map[string]string{deleted: "missing", flipped: "corrupt", badSeg: "corrupt", cutSeg: "corrupt"} {
		if !named(deep, key, kind) {
			t.Errorf("deep check did not name %s as %s: %+v", key, kind, deep.Problems)
		}
	}
	if len(deep.Problems) != 4 {
		t.Errorf("deep check found %d problems, want exactly the 4 planted: %+v", len(deep.Problems), deep.Problems)
	}
}

func named(r verify.Report, key, kind string) bool {
	for _, p := range r.Problems {
		if p.Key == key && p.Kind == kind {
			return true
		}
	}
	return false
}

// headless fails a test that sends a HEAD, and counts LISTs.
type headless struct {
	objstore.Store
	t     *testing.T
	lists int
}

func (s *headless) Head(ctx context.Context, key string) (objstore.Info, error) {
	s.t.Errorf("HEAD %s: a shallow check takes presence and size from the listing", key)
	return s.Store.Head(ctx, key)
}

func (s *headless) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	s.lists++
	return s.Store.List(ctx, prefix)
}

// A shallow check lists each directory once and asks for no object by
// itself beyond the manifests, however many chunks the replica holds.
func TestShallowCheckUsesTheListing(t *testing.T) {
	store, m := replica(t)
	ctx := context.Background()
	deleted := m.PackKey(m.Locs[7].Pack)
	store.Delete(ctx, deleted)
	emptied := m.PackKey(m.Locs[2].Pack)
	store.Delete(ctx, emptied)
	if _, err := store.Put(ctx, emptied, bytes.NewReader(nil), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	s := &headless{Store: store, t: t}
	rep, err := verify.Run(ctx, s, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.lists != 4 {
		t.Errorf("%d LISTs, want one for each of snapshots/, segments/, chunks/ and packs/", s.lists)
	}
	if !named(rep, deleted, "missing") || !named(rep, emptied, "corrupt") || len(rep.Problems) != 2 || rep.Chunks != 16 {
		t.Errorf("problems %+v over %d chunks; want %s missing and %s corrupt of 16", rep.Problems, rep.Chunks, deleted, emptied)
	}
	if len(rep.Ranges) != 0 || rep.Unrestorable == "" {
		t.Errorf("a snapshot lacking a chunk restores: ranges %+v", rep.Ranges)
	}
}

// Objects that are not ferry's are named, and are no problem: nothing
// reads them.
func TestForeignObjectsAreNamed(t *testing.T) {
	store, _ := replica(t)
	ctx := context.Background()
	foreign := []string{
		layout.SegmentKey(5, 7) + ".bak",
		"chunks/README",
		"snapshots/0000000000000009.manifest.tmp",
	}
	for _, key := range foreign {
		if _, err := store.Put(ctx, key, bytes.NewReader([]byte("x")), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := verify.Run(ctx, store, false, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("foreign objects fail a check: %+v, %v", rep, err)
	}
	var got []string
	for _, f := range rep.Foreign {
		got = append(got, f.Key)
	}
	slices.Sort(foreign)
	if !slices.Equal(got, foreign) {
		t.Errorf("Foreign = %q, want %q", got, foreign)
	}

	clean, _ := replica(t)
	rep, err = verify.Run(ctx, clean, false, nil)
	if err != nil || rep.Foreign == nil || len(rep.Foreign) != 0 {
		t.Errorf("a replica with nothing foreign reports %#v, %v; want an empty list", rep.Foreign, err)
	}
}
