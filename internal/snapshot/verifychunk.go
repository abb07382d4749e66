package snapshot

import (
	"context"

	"github.com/ferrydb/ferry/internal/objstore"
)

// VerifyChunks downloads every distinct chunk m names, one at a time, and
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
	comp := make([]byte, maxStoredChunk+1)
	plain := make([]byte, 0, ChunkSize)
	seen := make(map[Address]bool, len(m.Chunks))
	var bad []error
	for i, a := range m.Chunks {
		if seen[a] {
			continue
		}
		seen[a] = true
		if err := ctx.Err(); err != nil {
			return bad, err
		}
		key := ChunkKey(a)
		data, err := fetchChunk(ctx, store, key, i, comp)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		p, err := dec.DecodeAll(data, plain[:0])
		switch {
		case err != nil:
			bad = append(bad, corruptChunk(key, i, "does not decompress to at most %d bytes: %v", ChunkSize, err))
		case addr.Address(p) != a:
			bad = append(bad, corruptChunk(key, i, "content (%d bytes) does not hash to its address", len(p)))
		case len(p) != m.ChunkLen(i):
			bad = append(bad, corruptChunk(key, i, "%d bytes where chunk %d is %d", len(p), i, m.ChunkLen(i)))
		}
	}
	if DBHash(m.PageSize, m.PageCount, m.Chunks) != m.DBHash {
		bad = append(bad, &ManifestError{Key: m.Key(), Reason: "database hash does not match the chunk addresses"})
	}
	return bad, nil
}
