package snapshot

import (
	"context"
	"fmt"
	"io"

	"github.com/ferrydb/ferry/internal/objstore"
)

// Restore writes the database image m describes to dst. It makes up to
// parallelism reads at once (0 means 4): one per loose chunk, and one per
// run of nearby chunks in a pack (see plan). It checks each chunk's size and
// address against m before writing it at its offset, so nothing
// unverified reaches dst. A chunk that several places of the image share
// is fetched once. Errors name the chunk's key and match
// objstore.ErrNotFound or objstore.ErrCorrupt as the case may be.
//
// On success the image is complete and matches m's database hash; if dst
// has a Truncate method, as *os.File does, it is cut to the image's size.
// On failure dst holds an unspecified mix of verified chunks and must be
// discarded.
func Restore(ctx context.Context, store objstore.Store, m Manifest, dst io.WriterAt, parallelism int, keys Keys) error {
	wrap := func(err error) error { return fmt.Errorf("restore snapshot %s: %w", m.Key(), err) }
	if err := m.Validate(); err != nil {
		return wrap(err)
	}
	addr, err := addresserFor(&m, keys)
	if err != nil {
		return err
	}
	// Fetch each distinct address once, in image order, and write it
	// everywhere it appears.
	firstAt := make(map[Address]int, len(m.Chunks))
	also := make(map[int][]int)
	var order []int
	for i, a := range m.Chunks {
		if j, ok := firstAt[a]; ok {
			also[j] = append(also[j], i)
			continue
		}
		firstAt[a] = i
		order = append(order, i)
	}
	par := parallelismOr(parallelism, 4)
	dec, err := newDecoder(par)
	if err != nil {
		return wrap(err)
	}
	defer dec.Close()
	verified := make([]bool, len(m.Chunks))
	fetches := plan(&m, order)
	err = forEach(ctx, par, indexes(len(fetches)), func() func(context.Context, int) error {
		buf := make([]byte, maxStoredChunk+1)
		plain := make([]byte, 0, ChunkSize)
		return func(ctx context.Context, f int) error {
			return fetches[f].read(ctx, store, &m, buf, func(i int, stored []byte) error {
				key := fetches[f].key
				p, err := dec.DecodeAll(stored, plain[:0])
				if err != nil {
					return corruptChunk(key, i, "does not decompress to at most %d bytes: %v", ChunkSize, err)
				}
				if got := addr.Address(p); got != m.Chunks[i] {
					return corruptChunk(key, i, "content (%d bytes) hashes to %s, not to its address", len(p), got)
				}
				for _, j := range append([]int{i}, also[i]...) {
					if len(p) != m.ChunkLen(j) {
						return corruptChunk(key, j, "%d bytes where chunk %d is %d", len(p), j, m.ChunkLen(j))
					}
					if _, err := dst.WriteAt(p, int64(j)*ChunkSize); err != nil {
						return fmt.Errorf("write chunk %d at offset %d: %w", j, int64(j)*ChunkSize, err)
					}
					verified[j] = true
				}
				return nil
			})
		}
	})
	if err != nil {
		return wrap(err)
	}
	// Every chunk was checked against its address above; this proves
	// that none was skipped, so the image is the one the database hash
	// names.
	for i, ok := range verified {
		if !ok {
			return wrap(fmt.Errorf("chunk %d was never written", i))
		}
	}
	if DBHash(m.PageSize, m.PageCount, m.Chunks) != m.DBHash {
		return wrap(&ManifestError{Key: m.Key(), Reason: "database hash does not match the chunk addresses"})
	}
	if t, ok := dst.(interface{ Truncate(int64) error }); ok {
		if err := t.Truncate(m.Size()); err != nil {
			return wrap(fmt.Errorf("truncate destination to %d bytes: %w", m.Size(), err))
		}
	}
	return nil
}

// indexes returns 0..n-1.
func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// fetchChunk reads a stored chunk into buf. A body as long as buf is
// damage: no honest chunk is that large.
func fetchChunk(ctx context.Context, store objstore.Store, key string, index int, buf []byte) ([]byte, error) {
	rc, _, err := store.Get(ctx, key, nil)
	if err != nil {
		return nil, &ChunkError{Key: key, Index: index, Err: err}
	}
	defer rc.Close()
	n := 0
	for n < len(buf) {
		m, err := rc.Read(buf[n:])
		n += m
		if err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return nil, &ChunkError{Key: key, Index: index, Err: err}
		}
	}
	return nil, corruptChunk(key, index, "stored chunk is larger than %d bytes", maxStoredChunk)
}

// Check confirms that every chunk m names is in the store, with a Head per
// loose chunk and per pack, parallelism at a time (0 means 4): a pack must
// be long enough to hold every chunk m puts in it. It reads no chunk:
// Restore, or a deep verify, checks content.
func Check(ctx context.Context, store objstore.Store, m Manifest, parallelism int) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("check snapshot %s: %w", m.Key(), err)
	}
	type object struct {
		key   string
		index int   // a chunk stored in it, for errors
		min   int64 // the least size it may have
		max   int64
	}
	var objs []object
	seen := make(map[Address]bool, len(m.Chunks))
	packAt := make(map[uint32]int)
	for i, a := range m.Chunks {
		switch l := m.Loc(i); {
		case l.Pack == Loose:
			if !seen[a] {
				seen[a] = true
				objs = append(objs, object{key: ChunkKey(a), index: i, min: 1, max: maxStoredChunk})
			}
		default:
			j, ok := packAt[l.Pack]
			if !ok {
				j = len(objs)
				packAt[l.Pack] = j
				objs = append(objs, object{key: m.PackKey(l.Pack), index: i, max: 1 << 32})
			}
			objs[j].min = max(objs[j].min, int64(l.Offset)+int64(l.Length))
		}
	}
	err := forEach(ctx, parallelismOr(parallelism, 4), indexes(len(objs)), func() func(context.Context, int) error {
		return func(ctx context.Context, j int) error {
			o := objs[j]
			info, err := store.Head(ctx, o.key)
			if err != nil {
				return &ChunkError{Key: o.key, Index: o.index, Err: err}
			}
			if info.Size < o.min || info.Size > o.max {
				return corruptChunk(o.key, o.index, "stored object is %d bytes, not %d to %d", info.Size, o.min, o.max)
			}
			return nil
		}
	})
	if err != nil {
		return fmt.Errorf("check snapshot %s: %w", m.Key(), err)
	}
	return nil
}
