package snapshot

import (
	"bytes"
	"context"
	"io"
	"iter"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// randomImage returns a database image of size bytes with the mix real
// databases have: incompressible runs, repeated runs and zeroed chunks.
func randomImage(rng *rand.Rand, size int) []byte {
	b := make([]byte, size)
	for off := 0; off < size; off += 4096 {
		end := min(off+4096, size)
		switch rng.IntN(4) {
		case 0: // zeroes, as freed pages often are
		case 1:
			fill := byte(rng.Uint32())
			for i := off; i < end; i++ {
				b[i] = fill
			}
		default:
			for i := off; i < end; i++ {
				b[i] = byte(rng.Uint32())
			}
		}
	}
	return b
}

// memFile is an in-memory destination for Restore.
type memFile struct {
	mu  sync.Mutex
	buf []byte
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if end := int(off) + len(p); end > len(f.buf) {
		f.buf = append(f.buf, make([]byte, end-len(f.buf))...)
	}
	return copy(f.buf[off:], p), nil
}

func (f *memFile) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if int(size) < len(f.buf) {
		f.buf = f.buf[:size]
	} else {
		f.buf = append(f.buf, make([]byte, int(size)-len(f.buf))...)
	}
	return nil
}

// countingReader records which chunk offsets a snapshot read.
type countingReader struct {
	src   io.ReaderAt
	mu    sync.Mutex
	reads map[int64]int // offset -> bytes
	bytes int64
}

func newCountingReader(src io.ReaderAt) *countingReader {
	return &countingReader{src: src, reads: map[int64]int{}}
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.src.ReadAt(p, off)
	c.mu.Lock()
	c.reads[off] += n
	c.bytes += int64(n)
	c.mu.Unlock()
	return n, err
}

// countingStore counts requests by operation and key prefix, and can fail
// puts of chosen keys.
type countingStore struct {
	objstore.Store
	puts, gets, heads, lists atomic.Int64
	chunkPuts                atomic.Int64 // chunks stored loose
	packPuts                 atomic.Int64
	failPut                  func(key string) error
}

func (s *countingStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	s.puts.Add(1)
	if strings.HasPrefix(key, "chunks/") {
		s.chunkPuts.Add(1)
	}
	if strings.HasPrefix(key, "packs/") {
		s.packPuts.Add(1)
	}
	if s.failPut != nil {
		if err := s.failPut(key); err != nil {
			return objstore.Info{}, err
		}
	}
	return s.Store.Put(ctx, key, body, opts)
}

func (s *countingStore) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, key, rng)
}

func (s *countingStore) Head(ctx context.Context, key string) (objstore.Info, error) {
	s.heads.Add(1)
	return s.Store.Head(ctx, key)
}

func (s *countingStore) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	s.lists.Add(1)
	return s.Store.List(ctx, prefix)
}

func (s *countingStore) reset() {
	s.puts.Store(0)
	s.gets.Store(0)
	s.heads.Store(0)
	s.lists.Store(0)
	s.chunkPuts.Store(0)
	s.packPuts.Store(0)
}

// damageChunk replaces the stored bytes of chunk i of m, in its pack or
// loose, with what damage makes of them, and returns the key of the
// object it changed.
func damageChunk(t *testing.T, store *memstore.Store, m Manifest, i int, damage func(stored []byte) []byte) string {
	t.Helper()
	l := m.Loc(i)
	key := ChunkKey(m.Chunks[i])
	if l.Pack != Loose {
		key = m.PackKey(l.Pack)
	}
	rc, _, err := store.Get(context.Background(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if l.Pack == Loose {
		store.Corrupt(key, damage(data))
		return key
	}
	end := l.Offset + l.Length
	out := append(bytes.Clone(data[:l.Offset]), damage(bytes.Clone(data[l.Offset:end]))...)
	store.Corrupt(key, append(out, data[end:]...))
	return key
}

// sequentialIDs makes pack ids 1, 2, 3... in their first byte, so that a
// snapshot written with parallelism 1 is the same bytes every time.
type sequentialIDs struct{ n byte }

func (s *sequentialIDs) Read(p []byte) (int, error) {
	clear(p)
	s.n++
	p[0] = s.n
	return len(p), nil
}

func sha256Sum(b []byte) [32]byte { return SHA256{}.Address(b) }
