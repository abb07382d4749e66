package snapshot

import (
	"context"
	"fmt"

	"github.com/ferrydb/ferry/internal/objstore"
)

// VerifyChunks downloads every distinct chunk m names, one read at a time
// (a run of a pack's chunks, or a loose chunk), and
// checks that each decompresses to its recorded length and hashes to its
// address. Unlike Restore it does not stop at the first bad chunk: it
// returns one *ChunkError per damaged or missing chunk, for a deep verify
// that must name them all.
func VerifyChunks(ctx context.Context, store objstore.Store, m Manifest, keys Keys) ([]error, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	addr, err := addresserFor(&m, keys)
	if err != nil {
		return nil, err
	}
	dec, err := newDecoder(1)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	buf := make([]byte, maxStoredChunk+1)
	plain := make([]byte, 0, ChunkSize)
	seen := make(map[Address]bool, len(m.Chunks))
	var order []int
	for i, a := range m.Chunks {
		if !seen[a] {
			seen[a] = true
			order = append(order, i)
		}
	}
	var bad []error
	for _, f := range plan(&m, order) {
		if err := ctx.Err(); err != nil {
			return bad, err
		}
		checked := 0
		err := f.read(ctx, store, &m, buf, func(i int, stored []byte) error {
			checked++
			p, err := dec.DecodeAll(stored, plain[:0])
			switch {
			case err != nil:
				bad = append(bad, corruptChunk(f.key, i, "does not decompress to at most %d bytes: %v", ChunkSize, err))
			case addr.Address(p) != m.Chunks[i]:
				bad = append(bad, corruptChunk(f.key, i, "content (%d bytes) does not hash to its address", len(p)))
			case len(p) != m.ChunkLen(i):
				bad = append(bad, corruptChunk(f.key, i, "%d bytes where chunk %d is %d", len(p), i, m.ChunkLen(i)))
			}
			return nil
		})
		if err != nil {
			// The read stopped at the chunk the error names; the rest
			// of its run could not be read either.
			bad = append(bad, err)
			for _, i := range f.items[min(checked+1, len(f.items)):] {
				bad = append(bad, &ChunkError{Key: f.key, Index: i, Err: fmt.Errorf("unread: %w", err)})
			}
		}
	}
	if DBHash(m.PageSize, m.PageCount, m.Chunks) != m.DBHash {
		bad = append(bad, &ManifestError{Key: m.Key(), Reason: "database hash does not match the chunk addresses"})
	}
	return bad, nil
}
