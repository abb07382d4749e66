package snapshot

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

const (
	incPageSize  = 4096
	incPageCount = 2048 // 8 MiB
)

// baseSnapshot writes a full snapshot of an 8 MiB image and returns the
// image, its manifest and the counting store holding it.
func baseSnapshot(t *testing.T) ([]byte, Manifest, *countingStore) {
	t.Helper()
	img := randomImage(rand.New(rand.NewPCG(7, 7)), incPageSize*incPageCount)
	store := &countingStore{Store: memstore.New()}
	m, _, err := Write(context.Background(), store, bytes.NewReader(img), incPageSize, incPageCount, 100, t0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return img, m, store
}

// updatePages rewrites pages first..first+n-1 with fresh random bytes and
// returns the dirty set a WAL reader would report.
func updatePages(img []byte, first uint32, n int, seed uint64) ChunkSet {
	rng := rand.New(rand.NewPCG(seed, seed))
	dirty := ChunkSet{}
	for pgno := first; pgno < first+uint32(n); pgno++ {
		off := int(pgno-1) * incPageSize
		for i := off; i < off+incPageSize && i < len(img); i++ {
			img[i] = byte(rng.Uint32())
		}
		dirty.AddPage(incPageSize, pgno)
	}
	return dirty
}

// TestIncrementalClustered changes 1% of an 8 MiB database's pages in one
// region: the next snapshot rereads and uploads only the two chunks that
// cover them, and makes no request but their puts and the manifest's.
func TestIncrementalClustered(t *testing.T) {
	img, base, store := baseSnapshot(t)
	dirty := updatePages(img, 1001, incPageCount/100, 1) // pages 1001..1020: chunks 62 and 63
	if len(dirty) != 2 {
		t.Fatalf("dirty chunks %v", dirty)
	}
	src := newCountingReader(bytes.NewReader(img))
	store.reset()
	m, stats, err := Write(context.Background(), store, src, incPageSize, incPageCount, 101, t0, Options{Previous: &base, Dirty: dirty})
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Chunks: 128, ChunksReread: 2, ChunksUploaded: 2, ChunksExisting: 0, Packs: 1, BytesUploaded: stats.BytesUploaded}
	if stats != want {
		t.Fatalf("stats %+v, want %+v", stats, want)
	}
	if max := int64(2*maxStoredChunk + manifestHeaderSize + 128*(32+12) + 2*16 + 32); stats.BytesUploaded > max {
		t.Fatalf("uploaded %d bytes, more than two chunks and a manifest (%d)", stats.BytesUploaded, max)
	}
	if p, k, g, h, l := store.puts.Load(), store.packPuts.Load(), store.gets.Load(), store.heads.Load(), store.lists.Load(); p != 2 || k != 1 || g != 0 || h != 0 || l != 0 {
		t.Fatalf("requests: %d puts (%d packs), %d gets, %d heads, %d lists; want 2 puts (1 pack) and nothing else", p, k, g, h, l)
	}
	if len(m.Packs) != len(base.Packs)+1 {
		t.Fatalf("%d packs, want the base's %d and one more", len(m.Packs), len(base.Packs))
	}
	if src.bytes != 2*ChunkSize || len(src.reads) != 2 || src.reads[62*ChunkSize] != ChunkSize || src.reads[63*ChunkSize] != ChunkSize {
		t.Fatalf("read %d bytes at %v, want chunks 62 and 63", src.bytes, src.reads)
	}
	var diff []int
	for i := range m.Chunks {
		if m.Chunks[i] != base.Chunks[i] {
			diff = append(diff, i)
		}
	}
	if !slices.Equal(diff, []int{62, 63}) {
		t.Fatalf("chunks that changed: %v", diff)
	}
	var dst memFile
	if err := Restore(context.Background(), store, m, &dst, 4, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.buf, img) {
		t.Fatal("restored image differs")
	}
	_, want2, _ := HashDB(bytes.NewReader(img), incPageSize, incPageCount, SHA256{})
	if m.DBHash != want2 {
		t.Fatal("incremental database hash differs from a full rehash")
	}
}

// TestContinuityBrokeUsesStoredChunks is the path after a broken chain:
// every chunk is reread, but only changed ones are uploaded, because the
// earlier manifest says where its chunks are in the store; the new
// manifest points there.
func TestContinuityBrokeUsesStoredChunks(t *testing.T) {
	img, base, store := baseSnapshot(t)
	updatePages(img, 1001, incPageCount/100, 1)
	store.reset()
	src := newCountingReader(bytes.NewReader(img))
	m, stats, err := Write(context.Background(), store, src, incPageSize, incPageCount, 101, t0, Options{Stored: []*Manifest{&base}})
	if err != nil {
		t.Fatal(err)
	}
	if stats.ChunksReread != 128 || stats.ChunksUploaded != 2 || stats.ChunksExisting != 126 || store.packPuts.Load() != 1 {
		t.Fatalf("stats %+v, %d pack puts", stats, store.packPuts.Load())
	}
	if src.bytes != int64(len(img)) {
		t.Fatalf("read %d bytes, want the whole image", src.bytes)
	}
	var dst memFile
	if err := Restore(context.Background(), store, m, &dst, 4, nil); err != nil || !bytes.Equal(dst.buf, img) {
		t.Fatalf("restore: %v; equal %v", err, bytes.Equal(dst.buf, img))
	}
}

// TestNoKnowledgeStoresEveryChunk has neither a previous manifest nor
// stored ones: every chunk goes up again, in as few packs as PackSize
// allows, one request each.
func TestNoKnowledgeStoresEveryChunk(t *testing.T) {
	img, _, store := baseSnapshot(t)
	updatePages(img, 1, 1, 3)
	store.reset()
	m, stats, err := Write(context.Background(), store, bytes.NewReader(img), incPageSize, incPageCount, 101, t0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.ChunksUploaded != 128 || stats.ChunksExisting != 0 || stats.Packs != int(store.packPuts.Load()) || int64(stats.Packs) > stats.BytesUploaded/PackSize+1 {
		t.Fatalf("stats %+v, %d pack puts", stats, store.packPuts.Load())
	}
	var dst memFile
	if err := Restore(context.Background(), store, m, &dst, 4, nil); err != nil || !bytes.Equal(dst.buf, img) {
		t.Fatalf("restore: %v; equal %v", err, bytes.Equal(dst.buf, img))
	}
}

// TestDirtyPathGrowAndShrink checks that the chunks whose length changed
// are reread even when the WAL did not name them, and nothing else is.
func TestDirtyPathGrowAndShrink(t *testing.T) {
	img, base, store := baseSnapshot(t)
	ctx := context.Background()

	// Grow by 5 pages: a new, short chunk 128.
	grown := append(bytes.Clone(img), randomImage(rand.New(rand.NewPCG(9, 9)), 5*incPageSize)...)
	src := newCountingReader(bytes.NewReader(grown))
	m1, stats, err := Write(ctx, store, src, incPageSize, incPageCount+5, 101, t0, Options{Previous: &base, Dirty: ChunkSet{}})
	if err != nil {
		t.Fatal(err)
	}
	if stats.ChunksReread != 1 || len(src.reads) != 1 || src.reads[128*ChunkSize] != 5*incPageSize {
		t.Fatalf("grow: stats %+v, reads %v", stats, src.reads)
	}
	img1 := bytes.Clone(grown)
	// Grow chunk 128 from 5 to 9 pages and dirty chunk 3.
	grown = append(grown, randomImage(rand.New(rand.NewPCG(10, 10)), 4*incPageSize)...)
	grown[3*ChunkSize+17] ^= 0xff
	src = newCountingReader(bytes.NewReader(grown))
	m2, stats, err := Write(ctx, store, src, incPageSize, incPageCount+9, 102, t0, Options{Previous: &m1, Dirty: ChunkSet{3: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if stats.ChunksReread != 2 || src.reads[3*ChunkSize] != ChunkSize || src.reads[128*ChunkSize] != 9*incPageSize {
		t.Fatalf("regrow: stats %+v, reads %v", stats, src.reads)
	}
	// Shrink to 1000 pages: chunk 62 becomes short (pages 993..1000).
	// The base's packs now hold less than half their bytes for the new
	// snapshot, so the chunks kept from them are stored again, and no
	// pack of the new snapshot is mostly garbage.
	shrunk := grown[:1000*incPageSize]
	src = newCountingReader(bytes.NewReader(shrunk))
	m3, stats, err := Write(ctx, store, src, incPageSize, 1000, 103, t0, Options{Previous: &m2, Dirty: ChunkSet{}})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Chunks != 63 || stats.ChunksRepacked == 0 || stats.ChunksReread != 1+stats.ChunksRepacked || src.reads[62*ChunkSize] != 8*incPageSize {
		t.Fatalf("shrink: stats %+v, reads %v", stats, src.reads)
	}
	live := make([]int64, len(m3.Packs))
	for _, l := range m3.Locs {
		live[l.Pack] += int64(l.Length)
	}
	for p, n := range live {
		if 2*n < int64(m3.Packs[p].Size) && p < len(m3.Packs)-1 {
			t.Fatalf("pack %d of the shrunk snapshot holds %d live bytes of %d", p, n, m3.Packs[p].Size)
		}
	}
	for _, c := range []struct {
		m   Manifest
		img []byte
	}{{m1, img1}, {m2, grown}, {m3, shrunk}} {
		var dst memFile
		if err := Restore(ctx, store, c.m, &dst, 3, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst.buf, c.img) {
			t.Fatalf("snapshot %d restores a different image", c.m.TXID)
		}
	}
	// A new page size shares nothing with the previous snapshot: all is
	// reread, though the bytes are the same.
	src = newCountingReader(bytes.NewReader(shrunk))
	_, stats, err = Write(ctx, store, src, 8192, 500, 104, t0, Options{Previous: &m3, Dirty: ChunkSet{}})
	if err != nil {
		t.Fatal(err)
	}
	if stats.ChunksReread != 63 || stats.ChunksUploaded != 0 {
		t.Fatalf("new page size: stats %+v", stats)
	}
}

func TestPreviousNeedsDirty(t *testing.T) {
	img, base, store := baseSnapshot(t)
	_, _, err := Write(context.Background(), store, bytes.NewReader(img), incPageSize, incPageCount, 101, t0, Options{Previous: &base})
	if err == nil {
		t.Fatal("Write with Previous and no Dirty succeeded")
	}
}

func TestChunkSetAddPage(t *testing.T) {
	for _, c := range []struct {
		pageSize int
		pgno     uint32
		chunk    int
	}{{4096, 1, 0}, {4096, 16, 0}, {4096, 17, 1}, {512, 128, 0}, {512, 129, 1}, {65536, 1, 0}, {65536, 2, 1}, {65536, 1<<32 - 1, 1<<32 - 2}} {
		s := ChunkSet{}
		s.AddPage(c.pageSize, c.pgno)
		if !s.Has(c.chunk) || len(s) != 1 {
			t.Errorf("AddPage(%d, %d) = %v, want chunk %d", c.pageSize, c.pgno, s, c.chunk)
		}
	}
}
