package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

var t0 = time.Date(2025, 6, 1, 9, 30, 0, 123, time.UTC)

// roundTrip writes img as a snapshot, loads it back and restores it, and
// checks every step.
func roundTrip(t *testing.T, store objstore.Store, img []byte, pageSize int, txid uint64) (Manifest, Stats) {
	t.Helper()
	ctx := context.Background()
	pageCount := uint32(len(img) / pageSize)
	m, stats, err := Write(ctx, store, bytes.NewReader(img), pageSize, pageCount, txid, t0, Options{Parallelism: 3})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Chunks != ChunkCount(int64(len(img))) || stats.ChunksReread != stats.Chunks ||
		stats.ChunksUploaded+stats.ChunksExisting != stats.Chunks {
		t.Fatalf("stats %+v for %d bytes", stats, len(img))
	}
	chunks, dbHash, err := HashDB(bytes.NewReader(img), pageSize, pageCount, SHA256{})
	if err != nil {
		t.Fatal(err)
	}
	if m.DBHash != dbHash || len(chunks) != len(m.Chunks) {
		t.Fatalf("manifest database hash differs from HashDB's")
	}
	loaded, err := Load(ctx, store, txid)
	if err != nil {
		t.Fatal(err)
	}
	if !manifestsEqual(loaded, m) {
		t.Fatalf("Load = %+v, Write returned %+v", loaded, m)
	}
	var dst memFile
	dst.buf = bytes.Repeat([]byte{0xee}, len(img)+5000) // stale bytes Restore must cut
	if err := Restore(ctx, store, loaded, &dst, 4, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.buf, img) {
		t.Fatalf("restored image (%d bytes) differs from the original (%d bytes)", len(dst.buf), len(img))
	}
	if err := Check(ctx, store, loaded, 2); err != nil {
		t.Fatal(err)
	}
	return m, stats
}

func manifestsEqual(a, b Manifest) bool {
	x, err1 := a.MarshalBinary()
	y, err2 := b.MarshalBinary()
	return err1 == nil && err2 == nil && bytes.Equal(x, y) && a.Time.Equal(b.Time)
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct {
		pageSize  int
		pageCount int
	}{
		{512, 1},
		{1024, 1},
		{1024, 200},   // 200 KiB: three whole chunks and a short one
		{4096, 37},    // 148 KiB
		{4096, 16},    // exactly one chunk
		{4096, 300},   // 1.17 MiB
		{65536, 1},    // one page, one chunk
		{65536, 5},    // chunk = page
		{8192, 8 + 1}, // 72 KiB
	} {
		t.Run(fmt.Sprintf("%dx%d", tc.pageSize, tc.pageCount), func(t *testing.T) {
			img := randomImage(rng, tc.pageSize*tc.pageCount)
			roundTrip(t, memstore.New(), img, tc.pageSize, 42)
		})
	}
}

func TestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		pageSize := rapid.SampledFrom([]int{512, 1024, 4096, 65536}).Draw(rt, "pageSize")
		pageCount := rapid.IntRange(1, (600<<10)/pageSize).Draw(rt, "pageCount")
		seed := rapid.Uint64().Draw(rt, "seed")
		img := randomImage(rand.New(rand.NewPCG(seed, 0)), pageSize*pageCount)
		roundTrip(t, memstore.New(), img, pageSize, rapid.Uint64Range(1, 1<<62).Draw(rt, "txid"))
	})
}

// TestRoundTripFileStore runs a snapshot through the file backend and
// restores it into a real file holding stale bytes past the image.
func TestRoundTripFileStore(t *testing.T) {
	dir := t.TempDir()
	store, err := filestore.New(filepath.Join(dir, "replica"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	img := randomImage(rand.New(rand.NewPCG(2, 2)), 4096*77)
	m, _ := roundTrip(t, store, img, 4096, 9)

	path := filepath.Join(dir, "restored.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, len(img)*2), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Restore(context.Background(), store, m, f, 2, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatalf("restored file (%d bytes) differs from the image (%d bytes)", len(got), len(img))
	}
}

// TestDuplicateChunksStoredOnce snapshots an image whose chunks are all
// alike: one chunk goes up, and a restore fetches it once.
func TestDuplicateChunksStoredOnce(t *testing.T) {
	img := make([]byte, 10*ChunkSize)
	store := &countingStore{Store: memstore.New()}
	m, stats, err := Write(context.Background(), store, bytes.NewReader(img), 4096, uint32(len(img)/4096), 1, t0, Options{Parallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	if stats.ChunksUploaded != 1 || stats.ChunksExisting != 9 {
		t.Fatalf("stats %+v", stats)
	}
	store.reset()
	var dst memFile
	if err := Restore(context.Background(), store, m, &dst, 4, nil); err != nil {
		t.Fatal(err)
	}
	if n := store.gets.Load(); n != 1 || !bytes.Equal(dst.buf, img) {
		t.Fatalf("%d gets, image equal: %v", n, bytes.Equal(dst.buf, img))
	}
}

// failingFile is a Restore destination whose writes fail from the n-th on.
type failingFile struct {
	memFile
	left atomic.Int32
}

func (f *failingFile) WriteAt(p []byte, off int64) (int, error) {
	if f.left.Add(-1) < 0 {
		return 0, syscall.ENOSPC
	}
	return f.memFile.WriteAt(p, off)
}

// TestRestoreStopsAtAFailedWrite checks a restore whose destination
// fails part way (a full disk): it reports that write's error, not a
// chunk's or the workers' own, and returns, with nothing left running.
func TestRestoreStopsAtAFailedWrite(t *testing.T) {
	img := randomImage(rand.New(rand.NewPCG(5, 5)), 40*ChunkSize)
	store := memstore.New()
	m, _ := roundTrip(t, store, img, 4096, 7)
	for _, after := range []int32{0, 1, 17, 39} {
		dst := &failingFile{}
		dst.left.Store(after)
		err := Restore(context.Background(), store, m, dst, 4, nil)
		if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "write chunk") {
			t.Fatalf("writes failing after %d: restore returned %v, want the write's ENOSPC", after, err)
		}
	}
}
