package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"iter"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// httpStatuses answers as an S3 backend does: a missing key is a 404 and a
// failed condition a 412, each carrying the status code and the sentinel.
type httpStatuses struct{ objstore.Store }

func withStatus(op, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case objstore.IsNotFound(err):
		return &objstore.Error{Op: op, Key: key, StatusCode: 404, Err: err}
	case objstore.IsPreconditionFailed(err):
		return &objstore.Error{Op: op, Key: key, StatusCode: 412, Err: err}
	}
	return err
}

func (s httpStatuses) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	info, err := s.Store.Put(ctx, key, body, opts)
	return info, withStatus("put", key, err)
}

func (s httpStatuses) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	rc, info, err := s.Store.Get(ctx, key, rng)
	return rc, info, withStatus("get", key, err)
}

func (s httpStatuses) Head(ctx context.Context, key string) (objstore.Info, error) {
	info, err := s.Store.Head(ctx, key)
	return info, withStatus("head", key, err)
}

// sumOf adds up every series of the metric family name in reg.
func sumOf(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// Probing for a key that is not there and losing a create-only race are
// how ferry learns what a replica holds: they must not count as errors,
// or an alert on ferry_objstore_errors_total fires on every snapshot.
func TestMetricsCountExpectedAnswersAsOutcomes(t *testing.T) {
	ctx := context.Background()
	reg := objstore.NewRegistry()
	m := objstore.NewMetrics(reg)
	s := objstore.Stack(httpStatuses{memstore.New()}, objstore.StackOptions{Backend: "s3", Retry: fastRetry(), Metrics: m})

	info, err := s.Put(ctx, "k", strings.NewReader("v1"), objstore.PutOptions{IfNoneMatch: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Head(ctx, "missing"); !objstore.IsNotFound(err) {
		t.Fatalf("head of a missing key: %v", err)
	}
	if _, _, err := s.Get(ctx, "missing", nil); !objstore.IsNotFound(err) {
		t.Fatalf("get of a missing key: %v", err)
	}
	if _, err := s.Put(ctx, "k", strings.NewReader("v2"), objstore.PutOptions{IfNoneMatch: true}); !objstore.IsPreconditionFailed(err) {
		t.Fatalf("create-only put over an existing key: %v", err)
	}
	if _, err := s.Put(ctx, "k", strings.NewReader("v2"), objstore.PutOptions{IfMatch: info.ETag + "x"}); !objstore.IsPreconditionFailed(err) {
		t.Fatalf("compare-and-swap put with a stale etag: %v", err)
	}

	if got := sumOf(t, reg, "ferry_objstore_errors_total"); got != 0 {
		t.Errorf("ferry_objstore_errors_total = %v after only expected answers, want 0", got)
	}
	for _, c := range []struct {
		op, outcome string
		want        float64
	}{
		{"head", objstore.OutcomeNotFound, 1},
		{"get", objstore.OutcomeNotFound, 1},
		{"put", objstore.OutcomePreconditionFailed, 2},
		{"put", objstore.OutcomeOK, 1},
	} {
		if got := testutil.ToFloat64(m.Outcomes("s3", c.op, c.outcome)); got != c.want {
			t.Errorf("%s outcome %s = %v, want %v", c.op, c.outcome, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.Requests("s3", "put")); got != 3 {
		t.Errorf("put requests = %v, want 3: outcomes are still requests", got)
	}
}

// The same answers where ferry did not ask for them are failures.
func TestMetricsCountUnaskedAnswersAsErrors(t *testing.T) {
	ctx := context.Background()
	reg := objstore.NewRegistry()
	m := objstore.NewMetrics(reg)
	refused := &objstore.Error{Op: "put", Key: "k", StatusCode: 412, Err: objstore.ErrPreconditionFailed}
	gone := &objstore.Error{Op: "list", StatusCode: 404, Err: objstore.ErrNotFound}
	s := objstore.Stack(answering{memstore.New(), refused, gone}, objstore.StackOptions{Backend: "s3", Retry: fastRetry(), Metrics: m})

	if _, err := s.Put(ctx, "k", strings.NewReader("v"), objstore.PutOptions{}); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("put: %v", err)
	}
	for _, err := range s.List(ctx, "") {
		if !objstore.IsNotFound(err) {
			t.Fatalf("list: %v", err)
		}
	}
	if got := testutil.ToFloat64(m.Errors("s3", "put", "412")); got != 1 {
		t.Errorf("unconditional put answered 412: errors = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.Errors("s3", "list", "404")); got != 1 {
		t.Errorf("list answered 404: errors = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.Outcomes("s3", "list", objstore.OutcomeError)); got != 1 {
		t.Errorf("list error outcome = %v, want 1", got)
	}
	if got := sumOf(t, reg, "ferry_objstore_errors_total"); got != 2 {
		t.Errorf("ferry_objstore_errors_total = %v, want 2", got)
	}
}

// answering fails every put with put and every list with list.
type answering struct {
	objstore.Store
	put, list error
}

func (s answering) Put(context.Context, string, io.ReadSeeker, objstore.PutOptions) (objstore.Info, error) {
	return objstore.Info{}, s.put
}

func (s answering) List(context.Context, string) iter.Seq2[objstore.Info, error] {
	return func(yield func(objstore.Info, error) bool) { yield(objstore.Info{}, s.list) }
}

// Time spent waiting on a limit shows, by kind, in
// ferry_objstore_ratelimit_wait_seconds_total; with no limit nothing is
// recorded.
func TestMetricsRecordRateLimitWaits(t *testing.T) {
	ctx := context.Background()
	reg := objstore.NewRegistry()
	m := objstore.NewMetrics(reg)
	s := objstore.Stack(memstore.New(), objstore.StackOptions{
		Backend: "mem",
		Retry:   fastRetry(),
		Limits:  objstore.Limits{RequestsPerSecond: 20, UploadBytesPerSecond: 1 << 20},
		Metrics: m,
	})
	for range 30 {
		s.Head(ctx, "k")
	}
	// 20 heads ride the burst; the other 10 wait 0.5 s between them, less
	// the time spent between waits.
	if got := testutil.ToFloat64(m.RateLimitWait("mem", objstore.LimitRequests)); got < 0.4 {
		t.Errorf("30 heads at 20/s: %v s waited on requests, want at least 0.4", got)
	}
	if got := testutil.ToFloat64(m.RateLimitWait("mem", objstore.LimitBytes)); got != 0 {
		t.Errorf("no body sent yet: %v s waited on bytes, want 0", got)
	}
	if _, err := s.Put(ctx, "k", bytes.NewReader(make([]byte, 1<<20)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// 1 MiB at 1 MiB/s with a 256 KiB burst: 0.75 s, less the time spent
	// copying between waits.
	if got := testutil.ToFloat64(m.RateLimitWait("mem", objstore.LimitBytes)); got < 0.5 {
		t.Errorf("1 MiB put at 1 MiB/s: %v s waited on bytes, want at least 0.5", got)
	}
	if got := sumOf(t, reg, "ferry_objstore_ratelimit_wait_seconds_total"); got < 0.9 {
		t.Errorf("ferry_objstore_ratelimit_wait_seconds_total = %v, want at least 0.9", got)
	}

	unlimited := objstore.Stack(memstore.New(), objstore.StackOptions{Backend: "file", Retry: fastRetry(), Metrics: m})
	for range 30 {
		unlimited.Head(ctx, "k")
	}
	if got := testutil.ToFloat64(m.RateLimitWait("file", objstore.LimitRequests)); got != 0 {
		t.Errorf("no limit: %v s waited on requests, want 0", got)
	}
}
