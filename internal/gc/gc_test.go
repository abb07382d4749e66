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
	for _, a := range old.Chunks {
		gone = append(gone, layout.ChunkKey(a))
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

// TestYoungGarbageIsSpared checks the grace period: chunks no manifest
// names yet (those of a snapshot in flight) stay until they are older
// than Grace by the store's clock.
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
	rep, err := Run(ctx, store, Options{Retention: time.Hour, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Deleted) != 0 || rep.Spared != 2 {
		t.Fatalf("deleted %v, spared %d; want nothing deleted and 2 spared", rep.Deleted, rep.Spared)
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

// TestSnapshotRelyingOnGarbageSurvivesGC runs gc at the worst moments of a
// snapshot that finds its chunks already stored, named by no manifest and
// old enough to be garbage: before its manifest lands, and before its
// reprieve is stored. The manifest's chunks must all be there at the end.
// Without reprieves (the first case) the same interleaving leaves a
// manifest naming deleted chunks: the safety rule is what the test checks.
func TestSnapshotRelyingOnGarbageSurvivesGC(t *testing.T) {
	const window = 300 * time.Millisecond
	for _, c := range []struct {
		name     string
		reprieve time.Duration // the snapshot's window; negative: none
		gateAt   string        // the snapshot stops before its first Put here
		wantLost bool
	}{
		{"no reprieve: gc before the manifest", -1, "snapshots/", true},
		{"gc before the reprieve is stored", window, layout.ReprievesDir, false},
		{"gc before the manifest", window, "snapshots/", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			store := memstore.New()
			var clock atomic.Int64 // the store's clock, set by hand
			clock.Store(time.Now().UnixNano())
			store.SetClock(func() time.Time { return time.Unix(0, clock.Load()) })
			x := image(10, 4)
			past := time.Unix(0, clock.Load()).Add(-time.Minute)
			write(t, store, x, 1, past, snapshot.Options{})
			write(t, store, image(20, 4), 2, past.Add(time.Second), snapshot.Options{})
			// Only the newest snapshot is kept, so snapshot 1 and its
			// chunks are garbage.
			if _, err := Run(ctx, store, Options{Retention: time.Nanosecond, Grace: time.Hour}); err != nil {
				t.Fatal(err)
			}
			// Two hours on: snapshot 1's chunks are old enough to go.
			clock.Add(int64(2 * time.Hour))
			if _, err := store.Head(ctx, layout.ManifestKey(1)); err == nil {
				t.Fatal("snapshot 1 should be gone")
			}

			// A snapshot of image x again: every chunk is found stored.
			g := newGate(store, c.gateAt)
			done := make(chan snapshot.Manifest, 1)
			go func() {
				m, _, err := snapshot.Write(ctx, g, bytes.NewReader(x), pageSize, uint32(len(x)/pageSize), 3, time.Now(), snapshot.Options{ReprieveWindow: c.reprieve})
				if err != nil {
					t.Error(err)
				}
				done <- m
			}()
			<-g.reached
			rep, err := Run(ctx, store, Options{Retention: time.Nanosecond, Grace: time.Hour, ReprieveWindow: window})
			if err != nil {
				t.Fatal(err)
			}
			close(g.release)
			m := <-done
			if t.Failed() {
				return
			}
			bad, err := snapshot.VerifyChunks(ctx, store, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			if lost := len(bad) > 0; lost != c.wantLost {
				t.Fatalf("chunks missing under the manifest: %v (gc deleted %d objects, spared %d); want lost=%v", bad, len(rep.Deleted), rep.Spared, c.wantLost)
			}
		})
	}
}
