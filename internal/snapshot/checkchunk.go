package snapshot

import (
	"context"
	"io"

	"github.com/ferrydb/ferry/internal/layout"

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

// PackChunk is a chunk that a manifest places in a pack.
type PackChunk struct {
	Addr           Address
	Offset, Length uint32
}

// PackChunks returns, for each pack m names, the chunks m places in it.
func (m *Manifest) PackChunks() map[PackID][]PackChunk {
	out := make(map[PackID][]PackChunk, len(m.Packs))
	for i, l := range m.Locs {
		if l.Pack != Loose {
			id := m.Packs[l.Pack].ID
			out[id] = append(out[id], PackChunk{Addr: m.Chunks[i], Offset: l.Offset, Length: l.Length})
		}
	}
	return out
}

// CheckPack downloads the pack id whole and checks each of chunks in it
// with CheckChunkData. It returns the bytes read from the store, and a
// *ChunkError naming the pack when it is missing, shorter than a chunk
// needs, or holds a damaged chunk. Like CheckChunk it needs no manifest,
// only what manifests say the pack holds.
func CheckPack(ctx context.Context, store objstore.Store, id PackID, chunks []PackChunk, keys Keys) (int64, error) {
	key := layout.PackKey(id)
	rc, _, err := store.Get(ctx, key, nil)
	if err != nil {
		return 0, &ChunkError{Key: key, Index: -1, Err: err}
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<32))
	if err != nil {
		return int64(len(data)), &ChunkError{Key: key, Index: -1, Err: err}
	}
	for _, c := range chunks {
		end := int64(c.Offset) + int64(c.Length)
		if end > int64(len(data)) {
			return int64(len(data)), corruptChunk(key, -1, "%d bytes, shorter than the chunk at %d..%d", len(data), c.Offset, end)
		}
		if err := CheckChunkData(c.Addr, data[c.Offset:end], keys); err != nil {
			return int64(len(data)), corruptChunk(key, -1, "chunk %s at offset %d: %v", ChunkKey(c.Addr), c.Offset, err)
		}
	}
	return int64(len(data)), nil
}
