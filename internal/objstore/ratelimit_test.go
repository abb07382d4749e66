package objstore_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// These tests check lower bounds on elapsed time only: a limiter must make
// work take at least as long as the budget allows. An upper bound would
// measure the machine, not the limiter.

func TestRequestRateLimit(t *testing.T) {
	s := objstore.WithLimits(memstore.New(), objstore.Limits{RequestsPerSecond: 200})
	start := time.Now()
	for range 500 {
		s.Head(context.Background(), "k")
	}
	// 200 requests ride the initial burst; the other 300 need 1.5 s.
	if elapsed := time.Since(start); elapsed < 1400*time.Millisecond {
		t.Fatalf("500 requests at 200/s took %v, want at least 1.4s", elapsed)
	}
}

func TestByteRateLimit(t *testing.T) {
	const rate = 1 << 20
	s := objstore.WithLimits(memstore.New(), objstore.Limits{BytesPerSecond: rate})
	data := make([]byte, 2<<20)
	start := time.Now()
	if _, err := s.Put(context.Background(), "k", bytes.NewReader(data), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// 2 MiB at 1 MiB/s with a 256 KiB burst: at least 1.75 s.
	if elapsed := time.Since(start); elapsed < 1700*time.Millisecond {
		t.Fatalf("2 MiB put at 1 MiB/s took %v, want at least 1.7s", elapsed)
	}
	rc, _, err := s.Get(context.Background(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	start = time.Now()
	n, err := io.Copy(io.Discard, rc)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("get: %d bytes, %v", n, err)
	}
	if elapsed := time.Since(start); elapsed < 1700*time.Millisecond {
		t.Fatalf("2 MiB get at 1 MiB/s took %v, want at least 1.7s", elapsed)
	}
}

func TestRateLimitHonoursCancellation(t *testing.T) {
	s := objstore.WithLimits(memstore.New(), objstore.Limits{RequestsPerSecond: 0.01})
	s.Head(context.Background(), "k") // spends the burst of one
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Head(ctx, "k"); err == nil || objstore.IsNotFound(err) {
		t.Fatalf("head with no budget left and a short deadline: err = %v, want the limiter's refusal", err)
	}
}
