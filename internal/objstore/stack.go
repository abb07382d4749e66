package objstore

import "github.com/prometheus/client_golang/prometheus"

// StackOptions configure the wrappers Stack puts around a backend.
type StackOptions struct {
	// Backend names the backend in metrics: file, s3 or mem.
	Backend  string
	Retry    RetryPolicy
	Timeouts Timeouts
	Limits   Limits
	// Metrics, when set, records every call; nil records nothing.
	Metrics *Metrics
	// Pool, when positive, bounds the calls in flight (see WithPool);
	// each attempt of a retried call takes a place of its own, so a
	// call waiting out its backoff holds none.
	Pool int
}

// limitSharers is more puts than ferry runs at once on one store (a
// snapshot's chunks, a change set, the files uploader's workers), for
// sizing the put timeout under a byte limit.
const limitSharers = 16

// Stack wraps a backend the way every part of ferry uses it. From the
// outside in: retries, metrics, rate limits, timeouts. Metrics sit inside
// the retries so that each attempt, and the status it failed with, is
// counted, which is what makes a backoff visible on a dashboard; rate
// limits sit inside too, so every attempt pays for its request.
//
// A put's body is paid for as the backend reads it, inside the put's
// timeout, which allows Timeouts.MinRate bytes a second. A byte limit
// shared by several puts can leave each well below that: a large object
// would then be cut off on every attempt and never go up. So under a byte
// limit MinRate drops to the share of each of limitSharers puts.
func Stack(backend Store, o StackOptions) Store {
	if lim := putByteLimit(o.Limits); lim > 0 {
		o.Timeouts = o.Timeouts.withDefaults()
		o.Timeouts.MinRate = min(o.Timeouts.MinRate, max(1, lim/limitSharers))
	}
	s := WithTimeouts(backend, o.Timeouts)
	if o.Metrics != nil && o.Limits.OnWait == nil {
		o.Limits.OnWait = o.Metrics.WaitHook(o.Backend)
	}
	s = WithLimits(s, o.Limits)
	if o.Metrics != nil {
		s = WithMetrics(s, o.Metrics, o.Backend)
		if o.Retry.OnRetry == nil {
			o.Retry.OnRetry = o.Metrics.RetryHook(o.Backend)
		}
	}
	return WithRetry(WithPool(s, o.Pool), o.Retry)
}

// putByteLimit is the byte rate puts are held to under l; 0 for none.
func putByteLimit(l Limits) int64 {
	if l.UploadBytesPerSecond > 0 {
		return l.UploadBytesPerSecond
	}
	return max(0, l.BytesPerSecond)
}

// NewRegistry returns a registry for one ferry process; tests build their
// own so that nothing is shared between them.
func NewRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
