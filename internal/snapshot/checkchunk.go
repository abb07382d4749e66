package snapshot

import (
	"context"

	"github.com/ferrydb/ferry/internal/objstore"
)

// CheckChunk downloads the chunk at addr and checks it with
// CheckChunkData. It returns the bytes read from the store, and a
// *ChunkError when the chunk is missing or damaged. Unlike VerifyChunks it
// needs no manifest, for a scrub that walks a replica object by object.
func CheckChunk(ctx context.Context, store objstore.Store, addr Address, keys Keys) (int64, error) {
	data, err := fetchChunk(ctx, store, ChunkKey(addr), -1, make([]byte, maxStoredChunk+1))
	if err != nil {
		return 0, err
	}
	return int64(len(data)), CheckChunkData(addr, data, keys)
}

// CheckChunkData checks that data, a stored chunk, decompresses to at most
// a chunk's length and hashes to addr: by the SHA-256 scheme without keys,
// by the keyed scheme under one of keys otherwise.
func CheckChunkData(addr Address, data []byte, keys Keys) error {
	key := ChunkKey(addr)
	if len(data) > maxStoredChunk {
		return corruptChunk(key, -1, "stored chunk is larger than %d bytes", maxStoredChunk)
	}
	dec, err := newDecoder(1)
	if err != nil {
		return err
	}
	defer dec.Close()
	p, err := dec.DecodeAll(data, make([]byte, 0, ChunkSize))
	switch {
	case err != nil:
		return corruptChunk(key, -1, "does not decompress to at most %d bytes: %v", ChunkSize, err)
	case len(p) > ChunkSize:
		return corruptChunk(key, -1, "decompresses to %d bytes, more than a chunk", len(p))
	case !addressedBy(p, addr, keys):
		return corruptChunk(key, -1, "content (%d bytes) does not hash to its address", len(p))
	}
	return nil
}

// addressedBy reports whether chunk has address a, under one of keys or,
// without keys, by SHA-256.
func addressedBy(chunk []byte, a Address, keys Keys) bool {
	if keys == nil {
		return (SHA256{}).Address(chunk) == a
	}
	for _, k := range keys.Addressers() {
		if k.Address(chunk) == a {
			return true
		}
	}
	return false
}
