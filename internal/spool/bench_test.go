package spool

import (
	"errors"
	"testing"
)

// BenchmarkEnqueueClaimDone measures one entry's whole life, fsyncs
// included: the floor of files/s that the spool can carry.
func BenchmarkEnqueueClaimDone(b *testing.B) {
	s := openT(b, b.TempDir(), Options{})
	data := make([]byte, 4096)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := s.Enqueue("up", nil, writeBytes(data)); err != nil {
			b.Fatal(err)
		}
		e, err := s.Claim("up")
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Done(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParallel runs enqueuers and claimers side by side.
func BenchmarkParallel(b *testing.B) {
	s := openT(b, b.TempDir(), Options{})
	data := make([]byte, 4096)
	b.SetBytes(int64(len(data)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Enqueue("up", nil, writeBytes(data)); err != nil {
				b.Fatal(err)
			}
			e, err := s.Claim("up")
			if errors.Is(err, ErrEmpty) {
				continue
			}
			if err != nil {
				b.Fatal(err)
			}
			if err := e.Done(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
