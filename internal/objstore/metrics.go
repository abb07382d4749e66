package objstore

import (
	"context"
	"errors"
	"io"
	"iter"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus series every store call feeds, labelled by
// backend (file, s3, mem) and operation.
//
// A missing key on get or head and a failed condition on a conditional put
// are answers ferry asks for (is this chunk there yet? is the key still
// free?), not failures: they are counted as outcomes, never as errors, so
// that an alert on ferry_objstore_errors_total fires on trouble and not
// on every snapshot.
type Metrics struct {
	requests *prometheus.CounterVec
	outcomes *prometheus.CounterVec
	errors   *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	waits    *prometheus.CounterVec
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_objstore_requests_total",
			Help: "Object store calls made, retries included.",
		}, []string{"backend", "op"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_objstore_outcomes_total",
			Help: "Object store calls by outcome: ok, not_found (get, head), precondition_failed (conditional put) or error.",
		}, []string{"backend", "op", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_objstore_errors_total",
			Help: "Object store calls that failed, by HTTP status or failure kind; a missing key or a failed condition that was asked for is an outcome, not an error.",
		}, []string{"backend", "op", "status"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_objstore_bytes_total",
			Help: "Body bytes sent (put) and received (get).",
		}, []string{"backend", "op"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferry_objstore_request_duration_seconds",
			Help:    "Time to complete a call; for get, time to the response headers.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}, []string{"backend", "op"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_objstore_retries_total",
			Help: "Transient failures that were retried after a backoff.",
		}, []string{"backend", "op"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_objstore_ratelimit_wait_seconds_total",
			Help: "Time calls spent waiting on a rate limit, by kind: requests or bytes. The waits of a call, and of a put's body, count in ferry_objstore_request_duration_seconds too; this series tells a tight limit from a slow store.",
		}, []string{"backend", "kind"}),
	}
	reg.MustRegister(m.requests, m.outcomes, m.errors, m.bytes, m.latency, m.retries, m.waits)
	return m
}

// RetryHook returns a RetryPolicy.OnRetry that counts retries for backend.
func (m *Metrics) RetryHook(backend string) func(op, key string, attempt int, err error) {
	return func(op, _ string, _ int, _ error) { m.retries.WithLabelValues(backend, op).Inc() }
}

// WaitHook returns a Limits.OnWait that adds up, for backend, the time
// calls spend waiting on a limit.
func (m *Metrics) WaitHook(backend string) func(kind string, waited time.Duration) {
	requests, bytes := m.waits.WithLabelValues(backend, LimitRequests), m.waits.WithLabelValues(backend, LimitBytes)
	return func(kind string, waited time.Duration) {
		c := bytes
		if kind == LimitRequests {
			c = requests
		}
		c.Add(waited.Seconds())
	}
}

// WithMetrics records every call of s in m under the backend label.
func WithMetrics(s Store, m *Metrics, backend string) Store {
	return &metricStore{next: s, m: m, backend: backend}
}

type metricStore struct {
	next    Store
	m       *Metrics
	backend string
}

// Outcomes of a store call, as the outcome label spells them.
const (
	OutcomeOK                 = "ok"
	OutcomeNotFound           = "not_found"
	OutcomePreconditionFailed = "precondition_failed"
	OutcomeError              = "error"
)

// observe records one call; conditional says the call was a put with
// IfNoneMatch or IfMatch.
func (s *metricStore) observe(op string, conditional bool, start time.Time, err error) {
	s.m.requests.WithLabelValues(s.backend, op).Inc()
	s.m.latency.WithLabelValues(s.backend, op).Observe(time.Since(start).Seconds())
	o := outcome(op, conditional, err)
	s.m.outcomes.WithLabelValues(s.backend, op, o).Inc()
	if o == OutcomeError {
		s.m.errors.WithLabelValues(s.backend, op, StatusLabel(err)).Inc()
	}
}

// outcome sorts a call's result. Only the answers a caller asks for are
// outcomes: a missing key where ferry probes for one (get, head; a
// compare-and-swap put whose object went away) and a failed condition on
// a conditional put. The same answer to any other call (a list of a
// bucket that is gone, an unconditional put refused) is an error.
func outcome(op string, conditional bool, err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case IsNotFound(err) && (op == "get" || op == "head" || op == "put" && conditional):
		return OutcomeNotFound
	case IsPreconditionFailed(err) && op == "put" && conditional:
		return OutcomePreconditionFailed
	default:
		return OutcomeError
	}
}

// StatusLabel names the kind of a failure in a few fixed words, for metric
// labels and logs: the HTTP status when there was one.
func StatusLabel(err error) string {
	var se *Error
	switch {
	case errors.As(err, &se) && se.StatusCode != 0:
		return strconv.Itoa(se.StatusCode)
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrPreconditionFailed):
		return "precondition_failed"
	case errors.Is(err, ErrCorrupt):
		return "corrupt"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case Transient(err):
		return "network"
	default:
		return "other"
	}
}

func (s *metricStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts PutOptions) (Info, error) {
	start := time.Now()
	info, err := s.next.Put(ctx, key, body, opts)
	s.observe("put", opts.IfNoneMatch || opts.IfMatch != "", start, err)
	if err == nil {
		s.m.bytes.WithLabelValues(s.backend, "put").Add(float64(info.Size))
	}
	return info, err
}

func (s *metricStore) Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, Info, error) {
	start := time.Now()
	rc, info, err := s.next.Get(ctx, key, rng)
	s.observe("get", false, start, err)
	if err != nil {
		return nil, info, err
	}
	return &countingReader{rc: rc, c: s.m.bytes.WithLabelValues(s.backend, "get")}, info, nil
}

func (s *metricStore) Head(ctx context.Context, key string) (Info, error) {
	start := time.Now()
	info, err := s.next.Head(ctx, key)
	s.observe("head", false, start, err)
	return info, err
}

func (s *metricStore) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		start := time.Now()
		var lastErr error
		defer func() { s.observe("list", false, start, lastErr) }()
		for info, err := range s.next.List(ctx, prefix) {
			lastErr = err
			if !yield(info, err) {
				return
			}
		}
	}
}

func (s *metricStore) Delete(ctx context.Context, keys ...string) error {
	start := time.Now()
	err := s.next.Delete(ctx, keys...)
	s.observe("delete", false, start, err)
	return err
}

type countingReader struct {
	rc io.ReadCloser
	c  prometheus.Counter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.c.Add(float64(n))
	return n, err
}

func (r *countingReader) Close() error { return r.rc.Close() }

// Requests returns the request counter of one backend and operation.
func (m *Metrics) Requests(backend, op string) prometheus.Counter {
	return m.requests.WithLabelValues(backend, op)
}

// Outcomes returns the counter of one backend, operation and outcome
// (OutcomeOK, OutcomeNotFound, OutcomePreconditionFailed, OutcomeError).
func (m *Metrics) Outcomes(backend, op, outcome string) prometheus.Counter {
	return m.outcomes.WithLabelValues(backend, op, outcome)
}

// Errors returns the error counter of one backend, operation and status.
func (m *Metrics) Errors(backend, op, status string) prometheus.Counter {
	return m.errors.WithLabelValues(backend, op, status)
}

// Retries returns the retry counter of one backend and operation.
func (m *Metrics) Retries(backend, op string) prometheus.Counter {
	return m.retries.WithLabelValues(backend, op)
}

// RateLimitWait returns the seconds waited on one backend's limit of one
// kind (LimitRequests, LimitBytes).
func (m *Metrics) RateLimitWait(backend, kind string) prometheus.Counter {
	return m.waits.WithLabelValues(backend, kind)
}

// Bytes returns the byte counter of one backend and operation.
func (m *Metrics) Bytes(backend, op string) prometheus.Counter {
	return m.bytes.WithLabelValues(backend, op)
}
