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
type Metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_objstore_requests_total",
			Help: "Object store calls made, retries included.",
		}, []string{"backend", "op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_objstore_errors_total",
			Help: "Object store calls that failed, by HTTP status or failure kind.",
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
	}
	reg.MustRegister(m.requests, m.errors, m.bytes, m.latency, m.retries)
	return m
}

// RetryHook returns a RetryPolicy.OnRetry that counts retries for backend.
func (m *Metrics) RetryHook(backend string) func(op, key string, attempt int, err error) {
	return func(op, _ string, _ int, _ error) { m.retries.WithLabelValues(backend, op).Inc() }
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

func (s *metricStore) observe(op string, start time.Time, err error) {
	s.m.requests.WithLabelValues(s.backend, op).Inc()
	s.m.latency.WithLabelValues(s.backend, op).Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.errors.WithLabelValues(s.backend, op, StatusLabel(err)).Inc()
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
	s.observe("put", start, err)
	if err == nil {
		s.m.bytes.WithLabelValues(s.backend, "put").Add(float64(info.Size))
	}
	return info, err
}

func (s *metricStore) Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, Info, error) {
	start := time.Now()
	rc, info, err := s.next.Get(ctx, key, rng)
	s.observe("get", start, err)
	if err != nil {
		return nil, info, err
	}
	return &countingReader{rc: rc, c: s.m.bytes.WithLabelValues(s.backend, "get")}, info, nil
}

func (s *metricStore) Head(ctx context.Context, key string) (Info, error) {
	start := time.Now()
	info, err := s.next.Head(ctx, key)
	s.observe("head", start, err)
	return info, err
}

func (s *metricStore) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		start := time.Now()
		var lastErr error
		defer func() { s.observe("list", start, lastErr) }()
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
	s.observe("delete", start, err)
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

// Errors returns the error counter of one backend, operation and status.
func (m *Metrics) Errors(backend, op, status string) prometheus.Counter {
	return m.errors.WithLabelValues(backend, op, status)
}

// Retries returns the retry counter of one backend and operation.
func (m *Metrics) Retries(backend, op string) prometheus.Counter {
	return m.retries.WithLabelValues(backend, op)
}

// Bytes returns the byte counter of one backend and operation.
func (m *Metrics) Bytes(backend, op string) prometheus.Counter {
	return m.bytes.WithLabelValues(backend, op)
}
