package snapshot

import (
	"context"
	"fmt"
	"io"

	"github.com/ferrydb/ferry/internal/objstore"
)

// Restore writes the database image m describes to dst. It fetches up to
// parallelism chunks at once (0 means 4), and checks each one's size and
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
	err = forEach(ctx, par, order, func() func(context.Context, int) error {
		comp := make([]byte, maxStoredChunk+1)
		plain := make([]byte, 0, ChunkSize)
		return func(ctx context.Context, i int) error {
			a := m.Chunks[i]
			key := ChunkKey(a)
			data, err := fetchChunk(ctx, store, key, i, comp)
			if err != nil {
				return err
			}
			p, err := dec.DecodeAll(data, plain[:0])
			if err != nil {
				return corruptChunk(key, i, "does not decompress to at most %d bytes: %v", ChunkSize, err)
			}
			if got := addr.Address(p); got != a {
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
// distinct chunk, parallelism at a time (0 means 4). It reads no chunk:
// Restore, or a deep verify, checks content.
func Check(ctx context.Context, store objstore.Store, m Manifest, parallelism int) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("check snapshot %s: %w", m.Key(), err)
	}
	seen := make(map[Address]bool, len(m.Chunks))
	var order []int
	for i, a := range m.Chunks {
		if !seen[a] {
			seen[a] = true
			order = append(order, i)
		}
	}
	err := forEach(ctx, parallelismOr(parallelism, 4), order, func() func(context.Context, int) error {
		return func(ctx context.Context, i int) error {
			key := ChunkKey(m.Chunks[i])
			info, err := store.Head(ctx, key)
			if err != nil {
				return &ChunkError{Key: key, Index: i, Err: err}
			}
			if info.Size <= 0 || info.Size > maxStoredChunk {
				return corruptChunk(key, i, "stored chunk is %d bytes", info.Size)
			}
			return nil
		}
	})
	if err != nil {
		return fmt.Errorf("check snapshot %s: %w", m.Key(), err)
	}
	return nil
}
