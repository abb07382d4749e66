package objstore

import (
	"context"
	"errors"
)

// AttemptObserver is told the outcome of every single call a retrying
// store makes on a caller's behalf: nil when the store answered, the error
// otherwise, including each transient failure that is about to be retried.
type AttemptObserver func(op string, err error)

type observerKey struct{}

// WithAttemptObserver returns a context under which every attempt of a
// store call made by WithRetry is reported to fn. A caller that needs to
// know that its store is failing (to say so within seconds, not after the
// last of ten retries) or that it answers again passes it down; the store
// itself stays shared and unaware of who asks.
func WithAttemptObserver(ctx context.Context, fn AttemptObserver) context.Context {
	return context.WithValue(ctx, observerKey{}, fn)
}

// observe reports one attempt to the observer in ctx, if any. Answers that
// are outcomes rather than failures (not found, a precondition that did
// not hold) count as the store answering.
func observe(ctx context.Context, op string, err error) {
	fn, _ := ctx.Value(observerKey{}).(AttemptObserver)
	if fn == nil || errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrPreconditionFailed) {
		err = nil
	}
	fn(op, err)
}
