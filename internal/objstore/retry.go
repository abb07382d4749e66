package objstore

import (
	"context"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"time"
)

// RetryPolicy says how often and how patiently a transient failure is
// retried.
type RetryPolicy struct {
	// Attempts is the most calls made for one operation, the first
	// included. Zero means 10.
	Attempts int
	// Base is the first backoff ceiling; it doubles with each attempt up to
	// Max. Zero means 100ms and 30s.
	Base, Max time.Duration
	// OnRetry, when set, is told of every failure about to be retried, for
	// logs and metrics.
	OnRetry func(op, key string, attempt int, err error)
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 10
	}
	if p.Base <= 0 {
		p.Base = 100 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 30 * time.Second
	}
	return p
}

// Backoff returns the wait before retry number attempt (1 for the first
// retry): "full jitter", a uniform draw from zero to an exponentially
// growing ceiling. Drawing from the whole interval, rather than adding a
// little noise to a fixed delay, spreads out many clients that all failed
// at the same moment, so a store that comes back is not hit by all of them
// at once.
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	p = p.withDefaults()
	ceiling := p.Max
	if attempt < 40 {
		ceiling = min(p.Max, p.Base<<(attempt-1))
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// WithRetry retries transient failures of s (see Transient) with
// exponential backoff and full jitter, and returns permanent ones at once.
func WithRetry(s Store, p RetryPolicy) Store {
	return &retryStore{next: s, p: p.withDefaults()}
}

type retryStore struct {
	next Store
	p    RetryPolicy
}

// do calls fn until it succeeds, fails permanently, runs out of attempts or
// ctx ends.
func (r *retryStore) do(ctx context.Context, op, key string, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		observe(ctx, op, err)
		if err == nil || !Transient(err) || attempt >= r.p.Attempts {
			if err != nil && attempt > 1 {
				return fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return err
		}
		if r.p.OnRetry != nil {
			r.p.OnRetry(op, key, attempt, err)
		}
		t := time.NewTimer(r.p.Backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (while retrying after: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (r *retryStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts PutOptions) (Info, error) {
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return Info{}, &Error{Op: "put", Key: key, Err: fmt.Errorf("locate body: %w", err)}
	}
	var info Info
	err = r.do(ctx, "put", key, func() error {
		if _, err := body.Seek(start, io.SeekStart); err != nil {
			return &Error{Op: "put", Key: key, Err: fmt.Errorf("rewind body: %w", err)}
		}
		var err error
		info, err = r.next.Put(ctx, key, body, opts)
		return err
	})
	return info, err
}

func (r *retryStore) Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, Info, error) {
	var (
		rc   io.ReadCloser
		info Info
	)
	err := r.do(ctx, "get", key, func() error {
		var err error
		rc, info, err = r.next.Get(ctx, key, rng)
		return err
	})
	return rc, info, err
}

func (r *retryStore) Head(ctx context.Context, key string) (Info, error) {
	var info Info
	err := r.do(ctx, "head", key, func() error {
		var err error
		info, err = r.next.Head(ctx, key)
		return err
	})
	return info, err
}

// List retries a listing that fails before it yields anything. Once keys
// have been handed to the caller a retry would hand them out twice, so a
// later failure is returned as it is.
func (r *retryStore) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		var lastErr error
		for attempt := 1; ; attempt++ {
			yielded := false
			lastErr = nil
			for info, err := range r.next.List(ctx, prefix) {
				if !yielded {
					observe(ctx, "list", err)
				}
				if err != nil && !yielded && Transient(err) && attempt < r.p.Attempts {
					lastErr = err
					break
				}
				yielded = true
				if !yield(info, err) || err != nil {
					return
				}
			}
			if !yielded && lastErr == nil {
				observe(ctx, "list", nil) // an empty listing is an answer too
			}
			if lastErr == nil {
				return
			}
			if r.p.OnRetry != nil {
				r.p.OnRetry("list", prefix, attempt, lastErr)
			}
			t := time.NewTimer(r.p.Backoff(attempt))
			select {
			case <-ctx.Done():
				t.Stop()
				yield(Info{}, fmt.Errorf("%w (while retrying after: %v)", ctx.Err(), lastErr))
				return
			case <-t.C:
			}
		}
	}
}

func (r *retryStore) Delete(ctx context.Context, keys ...string) error {
	key := ""
	if len(keys) > 0 {
		key = keys[0]
	}
	return r.do(ctx, "delete", key, func() error { return r.next.Delete(ctx, keys...) })
}
