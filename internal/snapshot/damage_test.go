package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// smallSnapshot stores a 5-chunk snapshot with distinct chunks.
func smallSnapshot(t *testing.T) (*memstore.Store, Manifest, []byte) {
	t.Helper()
	store := memstore.New()
	img := make([]byte, 4*ChunkSize+1024)
	rng := rand.New(rand.NewPCG(4, 4))
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	m, _, err := Write(context.Background(), store, bytes.NewReader(img), 1024, uint32(len(img)/1024), 5, t0, Options{Parallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	return store, m, img
}

func zstdFrame(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// TestRestoreCorruptChunk damages one stored chunk in its pack in several
// ways: each Restore must fail naming that chunk and its pack, and write
// nothing from it.
func TestRestoreCorruptChunk(t *testing.T) {
	for _, tc := range []struct {
		name string
		data func(t *testing.T, stored []byte) []byte
	}{
		{"bit flip", func(t *testing.T, b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 4; return b }},
		{"truncated", func(t *testing.T, b []byte) []byte { return b[:len(b)-10] }},
		{"empty", func(t *testing.T, b []byte) []byte { return nil }},
		{"other content", func(t *testing.T, b []byte) []byte { return zstdFrame(t, []byte("not this chunk")) }},
		{"right length, other content", func(t *testing.T, b []byte) []byte { return zstdFrame(t, make([]byte, ChunkSize)) }},
		{"bomb", func(t *testing.T, b []byte) []byte { return zstdFrame(t, make([]byte, 64<<20)) }},
		{"endless body", func(t *testing.T, b []byte) []byte { return make([]byte, 1<<20) }},
		{"not zstd", func(t *testing.T, b []byte) []byte { return bytes.Repeat([]byte("garbage"), 100) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, m, _ := smallSnapshot(t)
			key := damageChunk(t, store, m, 2, func(b []byte) []byte { return tc.data(t, b) })

			var dst memFile
			err := Restore(context.Background(), store, m, &dst, 1, nil)
			var ce *ChunkError
			if !errors.Is(err, objstore.ErrCorrupt) || !errors.As(err, &ce) || ce.Key != key || ce.Index != 2 {
				t.Fatalf("Restore = %v, want a corrupt-chunk error for %s", err, key)
			}
			if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), m.Key()) {
				t.Fatalf("message %q does not name chunk %s and snapshot %s", err, key, m.Key())
			}
			if len(dst.buf) > 2*ChunkSize {
				// Parallelism 1 goes in order: chunks 0 and 1 may be there,
				// nothing from chunk 2 on.
				t.Fatalf("restore wrote %d bytes", len(dst.buf))
			}
		})
	}
}

func TestRestoreMissingPack(t *testing.T) {
	store, m, _ := smallSnapshot(t)
	key := m.PackKey(m.Locs[3].Pack)
	if err := store.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	err := Restore(context.Background(), store, m, &memFile{}, 4, nil)
	var ce *ChunkError
	if !errors.Is(err, objstore.ErrNotFound) || !errors.As(err, &ce) || ce.Key != key || !strings.Contains(err.Error(), key) {
		t.Fatalf("Restore = %v, want not-found naming %s", err, key)
	}
	err = Check(context.Background(), store, m, 4)
	if !errors.Is(err, objstore.ErrNotFound) || !errors.As(err, &ce) || ce.Key != key {
		t.Fatalf("Check = %v, want not-found naming %s", err, key)
	}
}

// TestManifestNamingAbsentChunk stores a well-formed manifest that names a
// loose chunk the store never had, and one that names a pack it never
// had: Load accepts them (they are well-formed), Check and Restore refuse
// them, naming the object.
func TestManifestNamingAbsentChunk(t *testing.T) {
	t.Run("loose", func(t *testing.T) {
		store, m, _ := smallSnapshot(t)
		bad := m
		bad.Chunks = append([]Address(nil), m.Chunks...)
		bad.Chunks[1] = SHA256{}.Address([]byte("a chunk nobody stored"))
		bad.Locs = append([]Loc(nil), m.Locs...)
		bad.Locs[1] = Loc{Pack: Loose}
		absentObject(t, store, bad, ChunkKey(bad.Chunks[1]))
	})
	t.Run("pack", func(t *testing.T) {
		store, m, _ := smallSnapshot(t)
		bad := m
		bad.Packs = []Pack{{ID: PackID{0xfe}, Size: m.Packs[0].Size}}
		absentObject(t, store, bad, bad.PackKey(0))
	})
}

func absentObject(t *testing.T, store *memstore.Store, bad Manifest, want string) {
	t.Helper()
	ctx := context.Background()
	bad.TXID = 6
	bad.DBHash = DBHash(bad.PageSize, bad.PageCount, bad.Chunks)
	data, err := bad.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, bad.Key(), bytes.NewReader(data), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(ctx, store, 6)
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Check":   Check(ctx, store, loaded, 2),
		"Restore": Restore(ctx, store, loaded, &memFile{}, 2, nil),
	} {
		if !errors.Is(err, objstore.ErrNotFound) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s = %v, want not-found naming %s", name, err, want)
		}
	}
}

// TestManifestWrittenLast fails the upload of one pack: Write must fail
// and leave no manifest behind, so no reader can see the snapshot.
func TestManifestWrittenLast(t *testing.T) {
	img := randomImage(rand.New(rand.NewPCG(5, 5)), 20*ChunkSize)
	for _, failAt := range []int64{1, 2, 4} {
		t.Run(fmt.Sprint(failAt), func(t *testing.T) {
			store := &countingStore{Store: memstore.New()}
			boom := errors.New("store is down")
			store.failPut = func(key string) error {
				if strings.HasPrefix(key, "packs/") && store.packPuts.Load() == failAt {
					return &objstore.Error{Op: "put", Key: key, StatusCode: 503, Err: boom}
				}
				return nil
			}
			// A pack for every chunk or two.
			opts := Options{Parallelism: 3, PackBytes: ChunkSize / 2}
			_, _, err := Write(context.Background(), store, bytes.NewReader(img), 4096, uint32(len(img)/4096), 8, t0, opts)
			if !errors.Is(err, boom) {
				t.Fatalf("Write = %v", err)
			}
			if !strings.Contains(err.Error(), "store pack packs/") {
				t.Fatalf("error %v does not name the pack", err)
			}
			for obj, err := range store.List(context.Background(), "snapshots/") {
				t.Fatalf("found %s (%v) after a failed snapshot", obj.Key, err)
			}
		})
	}
}

func TestWriteShortDatabase(t *testing.T) {
	img := make([]byte, 10*4096)
	store := memstore.New()
	_, _, err := Write(context.Background(), store, bytes.NewReader(img), 4096, 11, 1, t0, Options{})
	if err == nil || !strings.Contains(err.Error(), "shorter than its page count") {
		t.Fatalf("Write = %v", err)
	}
	for obj := range store.List(context.Background(), "snapshots/") {
		t.Fatalf("found %s after a failed snapshot", obj.Key)
	}
}

// TestWriteRetryFindsOwnManifest repeats a Write whose manifest is already
// stored, as a retry after a lost response would: the same image is
// success, and the stored manifest is the result; another image is
// refused.
func TestWriteRetryFindsOwnManifest(t *testing.T) {
	img := randomImage(rand.New(rand.NewPCG(6, 6)), 3*ChunkSize)
	store := memstore.New()
	ctx := context.Background()
	var ms [2]Manifest
	for i := range ms {
		m, _, err := Write(ctx, store, bytes.NewReader(img), 4096, 48, 3, t0, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
	}
	stored, err := Load(ctx, store, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if !slices.Equal(m.Packs, stored.Packs) || !slices.Equal(m.Locs, stored.Locs) {
			t.Fatalf("write %d returned packs %x, the stored manifest has %x", i, m.Packs, stored.Packs)
		}
	}
	img[0] ^= 1
	_, _, err = Write(ctx, store, bytes.NewReader(img), 4096, 48, 3, t0, Options{})
	if !objstore.IsPreconditionFailed(err) {
		t.Fatalf("Write over a different manifest = %v", err)
	}
}
