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
}

// Stack wraps a backend the way every part of ferry uses it. From the
// outside in: retries, metrics, rate limits, timeouts. Metrics sit inside
// the retries so that each attempt, and the status it failed with, is
// counted, which is what makes a backoff visible on a dashboard; rate
// limits sit inside too, so every attempt pays for its request.
func Stack(backend Store, o StackOptions) Store {
	s := WithTimeouts(backend, o.Timeouts)
	s = WithLimits(s, o.Limits)
	if o.Metrics != nil {
		s = WithMetrics(s, o.Metrics, o.Backend)
		if o.Retry.OnRetry == nil {
			o.Retry.OnRetry = o.Metrics.RetryHook(o.Backend)
		}
	}
	return WithRetry(s, o.Retry)
}

// NewRegistry returns a registry for one ferry process; tests build their
// own so that nothing is shared between them.
func NewRegistry() *prometheus.Registry { return prometheus.NewRegistry() }
