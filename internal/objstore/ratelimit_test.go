package objstore_test

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
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

// waits records what a limit reports to OnWait.
type waits struct {
	mu    sync.Mutex
	total map[string]time.Duration
	calls map[string]int
}

func newWaits() *waits {
	return &waits{total: map[string]time.Duration{}, calls: map[string]int{}}
}

func (w *waits) onWait(kind string, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.total[kind] += d
	w.calls[kind]++
}

func (w *waits) get(kind string) (time.Duration, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total[kind], w.calls[kind]
}

func TestRequestLimitReportsWaits(t *testing.T) {
	w := newWaits()
	s := objstore.WithLimits(memstore.New(), objstore.Limits{RequestsPerSecond: 20, OnWait: w.onWait})
	for range 30 {
		s.Head(context.Background(), "k")
	}
	// 20 requests ride the burst; the other 10 wait 0.5 s between them,
	// less the time spent between waits.
	total, calls := w.get(objstore.LimitRequests)
	if calls != 30 || total < 400*time.Millisecond {
		t.Errorf("30 requests at 20/s reported %d waits of %v in all, want 30 of at least 400ms", calls, total)
	}
	if _, calls := w.get(objstore.LimitBytes); calls != 0 {
		t.Errorf("%d byte waits reported with no byte limit", calls)
	}
}

// A cap on uploads holds puts and leaves gets alone: a restore is not
// slowed by a limit meant for the uplink.
func TestUploadLimitHoldsPutsOnly(t *testing.T) {
	w := newWaits()
	s := objstore.WithLimits(memstore.New(), objstore.Limits{UploadBytesPerSecond: 1 << 20, OnWait: w.onWait})
	data := make([]byte, 1<<20)
	start := time.Now()
	if _, err := s.Put(context.Background(), "k", bytes.NewReader(data), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// 1 MiB at 1 MiB/s with a 256 KiB burst: at least 0.75 s.
	if elapsed := time.Since(start); elapsed < 700*time.Millisecond {
		t.Fatalf("1 MiB put at 1 MiB/s took %v, want at least 0.7s", elapsed)
	}
	// The waits add up to 0.75 s less the time spent copying between them.
	if total, _ := w.get(objstore.LimitBytes); total < 500*time.Millisecond {
		t.Errorf("1 MiB put at 1 MiB/s reported %v waiting, want at least 0.5s", total)
	}
	_, putWaits := w.get(objstore.LimitBytes)
	rc, _, err := s.Get(context.Background(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if n, err := io.Copy(io.Discard, rc); err != nil || n != int64(len(data)) {
		t.Fatalf("get: %d bytes, %v", n, err)
	}
	if _, calls := w.get(objstore.LimitBytes); calls != putWaits {
		t.Errorf("get of 1 MiB under an upload-only limit waited on the byte budget %d times", calls-putWaits)
	}
}

// An upload cap replaces the shared byte budget for puts only: gets keep
// drawing on BytesPerSecond.
func TestUploadLimitReplacesByteLimitForPuts(t *testing.T) {
	s := objstore.WithLimits(memstore.New(), objstore.Limits{BytesPerSecond: 1 << 20, UploadBytesPerSecond: 1 << 30})
	data := make([]byte, 1<<20)
	if _, err := s.Put(context.Background(), "k", bytes.NewReader(data), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Get(context.Background(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	start := time.Now()
	if n, err := io.Copy(io.Discard, rc); err != nil || n != int64(len(data)) {
		t.Fatalf("get: %d bytes, %v", n, err)
	}
	// The put left the shared bucket full; 1 MiB at 1 MiB/s with a 256 KiB
	// burst takes at least 0.75 s.
	if elapsed := time.Since(start); elapsed < 700*time.Millisecond {
		t.Fatalf("1 MiB get at 1 MiB/s took %v, want at least 0.7s", elapsed)
	}
}

// A put slowed by ferry's own byte limit is not cut off as stalled: the
// timeout budget of the put below (50ms + 1 MiB at 4 MiB/s) is shorter
// than the 0.75 s the limit holds it for, so without Stack's allowance
// every attempt would time out and the object would never go up.
func TestStackUploadLimitOutlastsPutTimeout(t *testing.T) {
	fs, err := filestore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := objstore.Stack(fs, objstore.StackOptions{
		Backend:  "file",
		Retry:    objstore.RetryPolicy{Attempts: 1},
		Timeouts: objstore.Timeouts{Op: 50 * time.Millisecond, MinRate: 4 << 20},
		Limits:   objstore.Limits{UploadBytesPerSecond: 1 << 20},
	})
	if _, err := s.Put(context.Background(), "k", bytes.NewReader(make([]byte, 1<<20)), objstore.PutOptions{}); err != nil {
		t.Fatalf("1 MiB put under a 1 MiB/s limit: %v", err)
	}
}
