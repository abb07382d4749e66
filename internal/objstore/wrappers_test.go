package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/objstore/storetest"
)

// faulty wraps a store and makes its next calls fail or stall on demand.
type faulty struct {
	objstore.Store
	failures atomic.Int32 // calls left to fail with err
	err      error
	stall    atomic.Bool // block until the context ends
	calls    atomic.Int32
}

func (f *faulty) fault(ctx context.Context, op, key string) error {
	f.calls.Add(1)
	if f.stall.Load() {
		<-ctx.Done()
		return &objstore.Error{Op: op, Key: key, Err: ctx.Err()}
	}
	if f.failures.Add(-1) >= 0 {
		return &objstore.Error{Op: op, Key: key, Err: f.err}
	}
	return nil
}

func (f *faulty) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	if err := f.fault(ctx, "put", key); err != nil {
		io.CopyN(io.Discard, body, 3) // a failure mid-body leaves the body part-read
		return objstore.Info{}, err
	}
	return f.Store.Put(ctx, key, body, opts)
}

func (f *faulty) Head(ctx context.Context, key string) (objstore.Info, error) {
	if err := f.fault(ctx, "head", key); err != nil {
		return objstore.Info{}, err
	}
	return f.Store.Head(ctx, key)
}

func (f *faulty) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	return func(yield func(objstore.Info, error) bool) {
		if err := f.fault(ctx, "list", prefix); err != nil {
			yield(objstore.Info{}, err)
			return
		}
		for info, err := range f.Store.List(ctx, prefix) {
			if !yield(info, err) {
				return
			}
		}
	}
}

func fastRetry() objstore.RetryPolicy {
	return objstore.RetryPolicy{Attempts: 5, Base: time.Millisecond, Max: 5 * time.Millisecond}
}

func TestTransientClassification(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&objstore.Error{Op: "put", StatusCode: 503, Err: errors.New("slow down")}, true},
		{&objstore.Error{Op: "put", StatusCode: 500, Err: errors.New("internal")}, true},
		{&objstore.Error{Op: "put", StatusCode: 429, Err: errors.New("throttled")}, true},
		{&objstore.Error{Op: "put", StatusCode: 408, Err: errors.New("request timeout")}, true},
		{&objstore.Error{Op: "put", StatusCode: 403, Err: errors.New("denied")}, false},
		{&objstore.Error{Op: "put", StatusCode: 400, Err: errors.New("bad")}, false},
		{&objstore.Error{Op: "get", StatusCode: 404, Err: objstore.ErrNotFound}, false},
		{&objstore.Error{Op: "put", Err: objstore.ErrPreconditionFailed}, false},
		{&objstore.Error{Op: "put", Err: syscall.ECONNRESET}, true},
		{&objstore.Error{Op: "put", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{errors.Join(objstore.ErrTimeout, context.Canceled), true},
		{errors.New("something else"), false},
	} {
		if got := objstore.Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestRetryRecoversFromTransientFailures(t *testing.T) {
	f := &faulty{Store: memstore.New(), err: syscall.ECONNRESET}
	f.failures.Store(3)
	var retries []int
	p := fastRetry()
	p.OnRetry = func(op, key string, attempt int, err error) { retries = append(retries, attempt) }
	s := objstore.WithRetry(f, p)
	body := bytes.NewReader([]byte("the whole body"))
	if _, err := s.Put(context.Background(), "k", body, objstore.PutOptions{}); err != nil {
		t.Fatalf("put through 3 resets: %v", err)
	}
	if f.calls.Load() != 4 || fmt.Sprint(retries) != "[1 2 3]" {
		t.Fatalf("calls = %d, retries = %v; want 4 calls and retries [1 2 3]", f.calls.Load(), retries)
	}
	rc, _, err := s.Get(context.Background(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	if string(got) != "the whole body" {
		t.Fatalf("stored %q: the body was not rewound between attempts", got)
	}
}

func TestRetryStopsOnPermanentFailure(t *testing.T) {
	f := &faulty{Store: memstore.New(), err: errors.New("access denied")}
	f.failures.Store(100)
	s := objstore.WithRetry(f, fastRetry())
	_, err := s.Head(context.Background(), "k")
	if err == nil || f.calls.Load() != 1 {
		t.Fatalf("permanent failure: err = %v after %d calls, want an error after 1", err, f.calls.Load())
	}
}

func TestRetryGivesUpAfterAttempts(t *testing.T) {
	f := &faulty{Store: memstore.New(), err: syscall.ECONNREFUSED}
	f.failures.Store(100)
	s := objstore.WithRetry(f, fastRetry())
	_, err := s.Head(context.Background(), "k")
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "after 5 attempts") || f.calls.Load() != 5 {
		t.Fatalf("err = %v after %d calls, want connection refused after 5 attempts", err, f.calls.Load())
	}
}

func TestRetryListOnlyBeforeFirstItem(t *testing.T) {
	f := &faulty{Store: memstore.New(), err: syscall.ECONNRESET}
	for _, k := range []string{"a", "b"} {
		f.Store.Put(context.Background(), k, strings.NewReader(k), objstore.PutOptions{})
	}
	f.failures.Store(2)
	s := objstore.WithRetry(f, fastRetry())
	var keys []string
	for info, err := range s.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if fmt.Sprint(keys) != "[a b]" {
		t.Fatalf("list after two failures = %v, want [a b] once each", keys)
	}
}

func TestRetryHonoursCancellationDuringBackoff(t *testing.T) {
	f := &faulty{Store: memstore.New(), err: syscall.ECONNRESET}
	f.failures.Store(100)
	s := objstore.WithRetry(f, objstore.RetryPolicy{Attempts: 100, Base: time.Hour, Max: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := s.Head(ctx, "k"); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the context's deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled context did not interrupt a one-hour backoff")
	}
}

func TestBackoffFullJitterBounds(t *testing.T) {
	p := objstore.RetryPolicy{Base: 100 * time.Millisecond, Max: time.Second}
	for attempt := 1; attempt <= 8; attempt++ {
		ceiling := min(time.Second, 100*time.Millisecond<<(attempt-1))
		var lo, hi time.Duration = time.Hour, 0
		for range 2000 {
			d := p.Backoff(attempt)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < 0 || hi > ceiling {
			t.Fatalf("attempt %d: backoff in [%v, %v], want within [0, %v]", attempt, lo, hi, ceiling)
		}
		// Full jitter draws from the whole interval, not near its top.
		if lo > ceiling/10 || hi < ceiling*9/10 {
			t.Fatalf("attempt %d: backoff in [%v, %v] does not spread over [0, %v]", attempt, lo, hi, ceiling)
		}
	}
}

func TestTimeoutCutsOffStalledCall(t *testing.T) {
	f := &faulty{Store: memstore.New()}
	f.stall.Store(true)
	s := objstore.WithTimeouts(f, objstore.Timeouts{Op: 50 * time.Millisecond})
	_, err := s.Head(context.Background(), "k")
	if !errors.Is(err, objstore.ErrTimeout) || !objstore.Transient(err) {
		t.Fatalf("stalled head: err = %v, want a transient ErrTimeout", err)
	}
	// The caller's own deadline is not ours: it must not be retried.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Head(ctx, "k"); errors.Is(err, objstore.ErrTimeout) || objstore.Transient(err) {
		t.Fatalf("caller-cancelled head: err = %v, want a permanent cancellation", err)
	}
}

// stallingBody delivers some bytes, then blocks until its context ends.
type stallingBody struct {
	ctx  context.Context
	sent bool
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "partial"), nil
	}
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func (b *stallingBody) Close() error { return nil }

type stallingGet struct{ objstore.Store }

func (s stallingGet) Get(ctx context.Context, key string, _ *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	return &stallingBody{ctx: ctx}, objstore.Info{Key: key}, nil
}

func TestTimeoutCutsOffStalledBody(t *testing.T) {
	s := objstore.WithTimeouts(stallingGet{memstore.New()}, objstore.Timeouts{Op: time.Second, Stall: 50 * time.Millisecond})
	rc, _, err := s.Get(context.Background(), "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	if !errors.Is(err, objstore.ErrTimeout) || !objstore.Transient(err) {
		t.Fatalf("stalled body: err = %v, want a transient ErrTimeout", err)
	}
}

func TestStackPassesConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) objstore.Store {
		return objstore.Stack(memstore.New(), objstore.StackOptions{
			Backend: "mem",
			Retry:   fastRetry(),
			Limits:  objstore.Limits{RequestsPerSecond: 100_000, BytesPerSecond: 1 << 30},
			Metrics: objstore.NewMetrics(objstore.NewRegistry()),
		})
	}, storetest.Options{})
}

func TestMetricsCountAttemptsAndStatuses(t *testing.T) {
	m := objstore.NewMetrics(objstore.NewRegistry())
	f := &faulty{Store: memstore.New(), err: errors.New("service unavailable")}
	s := objstore.Stack(statusStore{f, 503}, objstore.StackOptions{Backend: "mem", Retry: fastRetry(), Metrics: m})
	f.failures.Store(2)
	if _, err := s.Put(context.Background(), "k", strings.NewReader("12345"), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.Requests("mem", "put")); got != 3 {
		t.Errorf("put requests = %v, want 3 (two failures, one success)", got)
	}
	if got := testutil.ToFloat64(m.Errors("mem", "put", "503")); got != 2 {
		t.Errorf("put errors with status 503 = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.Retries("mem", "put")); got != 2 {
		t.Errorf("put retries = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.Bytes("mem", "put")); got != 5 {
		t.Errorf("put bytes = %v, want 5", got)
	}
}

// statusStore stamps an HTTP status on the errors of the store it wraps.
type statusStore struct {
	objstore.Store
	status int
}

func (s statusStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	info, err := s.Store.Put(ctx, key, body, opts)
	if err != nil {
		err = &objstore.Error{Op: "put", Key: key, StatusCode: s.status, Err: err}
	}
	return info, err
}
