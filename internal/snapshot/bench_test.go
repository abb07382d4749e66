package snapshot

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// BenchmarkWriteFull snapshots a 16 MiB image from scratch into a memory
// store: hashing, compression and the upload path, without a network.
func BenchmarkWriteFull(b *testing.B) {
	img := randomImage(rand.New(rand.NewPCG(1, 1)), 16<<20)
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		if _, _, err := Write(context.Background(), memstore.New(), bytes.NewReader(img), 4096, uint32(len(img)/4096), 1, t0, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRestore(b *testing.B) {
	img := randomImage(rand.New(rand.NewPCG(1, 1)), 16<<20)
	store := memstore.New()
	m, _, err := Write(context.Background(), store, bytes.NewReader(img), 4096, uint32(len(img)/4096), 1, t0, Options{})
	if err != nil {
		b.Fatal(err)
	}
	dst := &memFile{buf: make([]byte, len(img))}
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		if err := Restore(context.Background(), store, m, dst, 4, nil); err != nil {
			b.Fatal(err)
		}
	}
}
