package gc

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

const pageSize = 4096

// image returns a database image of n 64 KiB chunks, each filled from
// seed+i, so that two images with the same seed share every chunk.
func image(seed uint64, n int) []byte {
	b := make([]byte, n*snapshot.ChunkSize)
	for i := range n {
		r := rand.New(rand.NewPCG(seed+uint64(i), 7))
		for j := i * snapshot.ChunkSize; j < (i+1)*snapshot.ChunkSize; j += 8 {
			v := r.Uint64()
			for k := range 8 {
				b[j+k] = byte(v >> (8 * k))
			}
		}
	}
	return b
}

func write(t *testing.T, store objstore.Store, img []byte, txid uint64, at time.Time, o snapshot.Options) snapshot.Manifest {
	t.Helper()
	m, _, err := snapshot.Write(context.Background(), store, bytes.NewReader(img), pageSize, uint32(len(img)/pageSize), txid, at, o)
	if err != nil {
		t.Fatalf("snapshot at txid %d: %v", txid, err)
	}
	return m
}

func putSegment(t *testing.T, store objstore.Store, first, last uint64) {
	t.Helper()
	if _, err := store.Put(context.Background(), layout.SegmentKey(first, last), strings.NewReader("segment"), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func keys(t *testing.T, store objstore.Store) map[string]bool {
	t.Helper()
	l, err := layout.Read(context.Background(), store, layout.All, segment.Heads(store))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range l.Snapshots {
		out[s.Key] = true
	}
	for _, s := range l.Segments {
		out[s.Key] = true
	}
	for _, b := range l.Breaks {
		out[b.Key] = true
	}
	for _, p := range l.Packs {
		out[p.Key] = true
	}
	for _, c := range l.Chunks {
		out[c.Key] = true
	}
	return out
}

// chunksPresent fails unless every chunk m names is in store.
func chunksPresent(t *testing.T, store objstore.Store, m snapshot.Manifest) {
	t.Helper()
	bad, err := snapshot.VerifyChunks(context.Background(), store, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatalf("manifest at txid %d names chunks the store lacks: %v", m.TXID, bad)
	}
}

// TestRetentionKeepsWhatRestoresAndDropsTheRest lays out three snapshots
// 10 h, 5 h and 1 h old with change sets between them, and keeps 3 h: the
// 5 h snapshot is the oldest needed (it restores the state 3 h ago), so
// the 10 h one goes with the change sets up to it and the chunks only it
// named; everything from the 5 h snapshot on stays.
func TestRetentionKeepsWhatRestoresAndDropsTheRest(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	now := time.Now()
	store.SetClock(func() time.Time { return now.Add(-2 * time.Hour) })
	old := write(t, store, image(100, 3), 10, now.Add(-10*time.Hour), snapshot.Options{})
	mid := write(t, store, image(200, 3), 20, now.Add(-5*time.Hour), snapshot.Options{})
	newest := write(t, store, image(300, 3), 30, now.Add(-time.Hour), snapshot.Options{})
	for _, r := range [][2]uint64{{1, 9}, {11, 19}, {20, 20}, {21, 29}, {31, 35}} {
		putSegment(t, store, r[0], r[1])
	}
	// Break markers: one where a chain before the oldest snapshot kept
	// ended, which no follower from there on asks for, and one a follower
	// of the chain from snapshot 20 would read at txid 30.
	for _, txid := range []uint64{12, 30} {
		if _, err := store.Put(ctx, layout.ChangeSetKey(txid), bytes.NewReader(segment.MarshalBreak(txid)), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := keys(t, store)

	store.SetClock(time.Now) // the objects were stored two hours ago
	dry, err := Run(ctx, store, Options{Retention: 3 * time.Hour, Grace: time.Hour, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(t, store); len(got) != len(before) {
		t.Fatalf("a dry run deleted %d objects", len(before)-len(got))
	}
	rep, err := Run(ctx, store, Options{Retention: 3 * time.Hour, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Oldest != 20 || dry.Oldest != 20 {
		t.Fatalf("oldest kept snapshot %d (dry run %d), want 20", rep.Oldest, dry.Oldest)
	}
	if len(rep.Deleted) != len(dry.Deleted) || rep.Bytes != dry.Bytes {
		t.Fatalf("the dry run announced %d objects (%d bytes), the run deleted %d (%d bytes)", len(dry.Deleted), dry.Bytes, len(rep.Deleted), rep.Bytes)
	}
	after := keys(t, store)
	gone := []string{old.Key(), layout.SegmentKey(1, 9), layout.SegmentKey(11, 19), layout.SegmentKey(20, 20), layout.ChangeSetKey(12)}
	for p := range old.Packs {
		gone = append(gone, old.PackKey(uint32(p)))
	}
	for _, k := range gone {
		if after[k] {
			t.Errorf("%s is past retention and still there", k)
		}
	}
	kept := []string{mid.Key(), newest.Key(), layout.SegmentKey(21, 29), layout.SegmentKey(31, 35), layout.ChangeSetKey(30)}
	for _, k := range kept {
		if !after[k] {
			t.Errorf("%s is needed inside retention and was deleted", k)
		}
	}
	chunksPresent(t, store, mid)
	chunksPresent(t, store, newest)
	if len(after) != len(before)-len(gone) {
		t.Fatalf("%d objects left of %d; %d should have gone", len(after), len(before), len(gone))
	}
}

// TestYoungGarbageIsSpared checks the grace period: chunks and packs no
// manifest names yet (those of a snapshot in flight) stay until they are
// older than Grace by the store's clock.
func TestYoungGarbageIsSpared(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	write(t, store, image(1, 2), 1, time.Now(), snapshot.Options{})
	inFlight := image(50, 2)
	for i := range 2 {
		a := snapshot.SHA256{}.Address(inFlight[i*snapshot.ChunkSize : (i+1)*snapshot.ChunkSize])
		if _, err := store.Put(ctx, layout.ChunkKey(a), bytes.NewReader([]byte("x")), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Put(ctx, layout.PackKey([16]byte{7}), bytes.NewReader([]byte("x")), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, store, Options{Retention: time.Hour, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 0 || rep.Spared != 3 {
		t.Fatalf("deleted %v, spared %d; want nothing deleted and 3 spared", rep.Deleted, rep.Spared)
	}
}

// gate is a store that stops a Put whose key has a prefix until released,
// so that a test can run gc at an exact point of a snapshot.
type gate struct {
	objstore.Store
	prefix  string
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate(s objstore.Store, prefix string) *gate {
	return &gate{Store: s, prefix: prefix, reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) Put(ctx context.Context, key string, body io.ReadSeeker, o objstore.PutOptions) (objstore.Info, error) {
	if strings.HasPrefix(key, g.prefix) {
		g.once.Do(func() {
			close(g.reached)
			<-g.release
		})
	}
	return g.Store.Put(ctx, key, body, o)
}

// TestSnapshotInFlightSurvivesGC runs gc while a snapshot has stored its
// packs and not yet its manifest, at a time when every older snapshot is
// past retention: the new packs are spared as younger than Grace, the
// previous snapshot's packs as named by the newest manifest, and the
// packs of expired snapshots go once old enough. The manifest's chunks
// must all be there at the end.
func TestSnapshotInFlightSurvivesGC(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	var clock atomic.Int64 // the store's clock, set by hand
	clock.Store(time.Now().UnixNano())
	store.SetClock(func() time.Time { return time.Unix(0, clock.Load()) })
	past := time.Unix(0, clock.Load()).Add(-time.Minute)
	first := write(t, store, image(10, 4), 1, past, snapshot.Options{})
	y := image(20, 4)
	second := write(t, store, y, 2, past.Add(time.Second), snapshot.Options{})
	if _, err := Run(ctx, store, Options{Retention: time.Nanosecond, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(2 * time.Hour))
	// Snapshot 1 went, and two hours on its pack is old enough to go too.
	if _, err := Run(ctx, store, Options{Retention: time.Nanosecond, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Head(ctx, first.PackKey(0)); !objstore.IsNotFound(err) {
		t.Fatalf("the expired snapshot's pack: %v; want it gone", err)
	}

	// Snapshot 3 changes one chunk of snapshot 2's image: it stores one
	// pack and names snapshot 2's for the rest.
	y[5] ^= 1
	dirty := snapshot.ChunkSet{}
	dirty.Add(0)
	g := newGate(store, "snapshots/")
	done := make(chan snapshot.Manifest, 1)
	go func() {
		m, _, err := snapshot.Write(ctx, g, bytes.NewReader(y), pageSize, uint32(len(y)/pageSize), 3, time.Now(), snapshot.Options{Previous: &second, Dirty: dirty})
		if err != nil {
			t.Error(err)
		}
		done <- m
	}()
	<-g.reached
	rep, err := Run(ctx, store, Options{Retention: time.Nanosecond, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	close(g.release)
	m := <-done
	if t.Failed() {
		return
	}
	if len(m.Packs) != 2 || rep.Spared != 1 {
		t.Fatalf("snapshot 3 names %d packs, gc spared %d; want 2 and 1", len(m.Packs), rep.Spared)
	}
	bad, err := snapshot.VerifyChunks(ctx, store, m, nil)
	if err != nil || len(bad) > 0 {
		t.Fatalf("chunks missing under the manifest: %v, %v (gc deleted %v)", bad, err, rep.Deleted)
	}
}
