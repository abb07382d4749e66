package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
)

// PackSize is the size at which a snapshot closes the pack it is filling
// and starts another. A pack holds the chunks of one upload one after
// another, each one zstd frame, with nothing between them: the manifest
// that names the pack says where each chunk starts and how long it is.
//
// Stored one object each, the chunks of a 1 GiB database cost 16,384
// requests to upload and as many to restore; in 4 MiB packs, about 150
// (compressed) of each. The chunks keep their addresses, so a snapshot
// still uploads only the chunks that changed, and a restore still checks
// each one against its address. A pack is deleted only once no manifest
// kept names any of its chunks, so a replica can hold chunks that nothing
// needs any more until the last of their pack's goes.
const PackSize = 4 << 20

// packer fills packs with compressed chunks and uploads each pack once it
// is full, on the goroutine whose chunk filled it, so that uploads run as
// parallel as the chunks' compression. Every method is safe to call from
// many goroutines.
type packer struct {
	store objstore.Store
	ids   io.Reader // where pack ids come from: crypto/rand but in tests
	size  int       // PackSize but in tests

	mu    sync.Mutex
	cur   *openPack
	spare [][]byte // buffers of packs already stored, for the next ones
	packs []Pack
	locs  map[Address]Loc // the location of every chunk in a stored pack
	bytes int64           // pack bytes stored
	puts  int
}

// openPack is a pack being filled: its bytes, and the chunks in it.
type openPack struct {
	buf    []byte
	chunks []packed
}

type packed struct {
	addr           Address
	offset, length uint32
}

func newPacker(store objstore.Store, ids io.Reader, size int) *packer {
	if ids == nil {
		ids = rand.Reader
	}
	return &packer{store: store, ids: ids, size: size, locs: map[Address]Loc{}}
}

// add appends the stored form of the chunk with address a to the open
// pack, and uploads the pack if that filled it.
func (p *packer) add(ctx context.Context, a Address, comp []byte) error {
	p.mu.Lock()
	if p.cur == nil {
		p.cur = &openPack{buf: p.newBuf()}
	}
	cur := p.cur
	cur.chunks = append(cur.chunks, packed{addr: a, offset: uint32(len(cur.buf)), length: uint32(len(comp))})
	cur.buf = append(cur.buf, comp...)
	full := len(cur.buf) >= p.size
	if full {
		p.cur = nil
	}
	p.mu.Unlock()
	if !full {
		return nil
	}
	return p.store1(ctx, cur)
}

// newBuf returns an empty buffer for a pack, one that a stored pack left
// if there is one. A pack's buffer is allocated once at its full size and
// reused: grown by appends and allocated anew for each pack, the buffers
// of a 1 GiB snapshot cost the process about 2 GiB of fresh memory to
// fault in and clear, as much CPU as compressing the chunks. The caller
// holds p.mu.
func (p *packer) newBuf() []byte {
	if n := len(p.spare); n > 0 {
		b := p.spare[n-1]
		p.spare = p.spare[:n-1]
		return b[:0]
	}
	return make([]byte, 0, p.size+maxStoredChunk)
}

// flush uploads the pack being filled, if any.
func (p *packer) flush(ctx context.Context) error {
	p.mu.Lock()
	cur := p.cur
	p.cur = nil
	p.mu.Unlock()
	if cur == nil {
		return nil
	}
	return p.store1(ctx, cur)
}

// store1 uploads one pack under a new random id, create-only, and records
// where each of its chunks is. A pack is a new object every time, so a
// create-only put that finds its key taken means only that an earlier
// attempt of this very put landed: 128 random bits do not collide.
func (p *packer) store1(ctx context.Context, op *openPack) error {
	var id PackID
	p.mu.Lock() // the test source of ids need not be safe for concurrent use
	_, err := io.ReadFull(p.ids, id[:])
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("name a pack: %w", err)
	}
	key := layout.PackKey(id)
	_, err = p.store.Put(ctx, key, bytes.NewReader(op.buf), objstore.PutOptions{IfNoneMatch: true})
	if err != nil && !objstore.IsPreconditionFailed(err) {
		return fmt.Errorf("store pack %s of %d chunks: %w", key, len(op.chunks), err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// The store is done with the buffer once Put has returned.
	p.spare = append(p.spare, op.buf)
	n := uint32(len(p.packs))
	p.packs = append(p.packs, Pack{ID: id, Size: uint32(len(op.buf))})
	for _, c := range op.chunks {
		p.locs[c.addr] = Loc{Pack: n, Offset: c.offset, Length: c.length}
	}
	p.bytes += int64(len(op.buf))
	p.puts++
	return nil
}

// fetch is one ranged read of a pack that yields the chunks of items, in
// the order they are stored, or one read of a loose chunk.
type fetch struct {
	key    string
	loose  bool
	offset int64 // where the read starts, in the pack
	end    int64
	items  []int // chunk indexes, by offset
}

// Limits of the reads a restore makes of packs. A read spans the chunks
// it needs and the gaps between them when a gap is shorter than
// maxFetchGap, which costs less than another request, up to maxFetch
// bytes, so that parallel reads each stay a bounded share of memory and
// of the work.
const (
	maxFetchGap = 1 << 20
	maxFetch    = 8 << 20
)

// plan returns the reads that fetch the chunks of m at indexes items:
// one per loose chunk, and for packs, runs of nearby chunks.
func plan(m *Manifest, items []int) []fetch {
	var out []fetch
	byPack := map[uint32][]int{}
	for _, i := range items {
		l := m.Loc(i)
		if l.Pack == Loose {
			out = append(out, fetch{key: ChunkKey(m.Chunks[i]), loose: true, items: []int{i}})
			continue
		}
		byPack[l.Pack] = append(byPack[l.Pack], i)
	}
	packs := make([]uint32, 0, len(byPack))
	for p := range byPack {
		packs = append(packs, p)
	}
	slices.Sort(packs)
	for _, p := range packs {
		in := byPack[p]
		slices.SortFunc(in, func(a, b int) int { return int(m.Locs[a].Offset) - int(m.Locs[b].Offset) })
		var f *fetch
		for _, i := range in {
			l := m.Locs[i]
			start, end := int64(l.Offset), int64(l.Offset)+int64(l.Length)
			if f == nil || start-f.end > maxFetchGap || end-f.offset > maxFetch || start < f.end {
				out = append(out, fetch{key: m.PackKey(p), offset: start, end: end})
				f = &out[len(out)-1]
			}
			f.items = append(f.items, i)
			f.end = end
		}
	}
	return out
}

// read performs f, handing each chunk's stored bytes to yield in turn;
// buf must hold maxStoredChunk+1 bytes. An error of the store or of a
// short object is a *ChunkError naming the chunk it stopped at.
func (f *fetch) read(ctx context.Context, store objstore.Store, m *Manifest, buf []byte, yield func(i int, stored []byte) error) error {
	if f.loose {
		i := f.items[0]
		data, err := fetchChunk(ctx, store, f.key, i, buf)
		if err != nil {
			return err
		}
		return yield(i, data)
	}
	rc, _, err := store.Get(ctx, f.key, &objstore.Range{Offset: f.offset, Length: f.end - f.offset})
	if err != nil {
		return &ChunkError{Key: f.key, Index: f.items[0], Err: err}
	}
	defer rc.Close()
	pos := f.offset
	for _, i := range f.items {
		l := m.Locs[i]
		if skip := int64(l.Offset) - pos; skip > 0 {
			if _, err := io.CopyN(io.Discard, rc, skip); err != nil {
				return packReadError(f.key, i, err)
			}
		}
		data := buf[:l.Length]
		if _, err := io.ReadFull(rc, data); err != nil {
			return packReadError(f.key, i, err)
		}
		pos = int64(l.Offset) + int64(l.Length)
		if err := yield(i, data); err != nil {
			return err
		}
	}
	return nil
}

// packReadError is a read of a pack that ended early: the pack is shorter
// than its manifest says, which is damage, or the connection failed.
func packReadError(key string, i int, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return corruptChunk(key, i, "the pack ends before the chunk does")
	}
	return &ChunkError{Key: key, Index: i, Err: err}
}
