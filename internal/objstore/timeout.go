package objstore

import (
	"context"
	"errors"
	"io"
	"iter"
	"sync"
	"time"
)

// Timeouts bound how long any single call may take, so that a half-dead
// connection (one that accepted the request and then went silent) fails the
// call and lets the retry wrapper try again, instead of holding a worker
// forever.
type Timeouts struct {
	// Op bounds a call that moves no body (head, delete, one list page) and
	// the wait for a response to start. Zero means 30s.
	Op time.Duration
	// MinRate is the slowest upload, in bytes per second, still counted as
	// progress: a Put of n bytes may take Op + n/MinRate. Zero means 256 KiB/s.
	MinRate int64
	// Stall bounds a single Read of a Get body. Zero means Op.
	Stall time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	if t.Op <= 0 {
		t.Op = 30 * time.Second
	}
	if t.MinRate <= 0 {
		t.MinRate = 256 << 10
	}
	if t.Stall <= 0 {
		t.Stall = t.Op
	}
	return t
}

// ErrTimeout marks a call cut off by a Timeouts bound. It is transient.
var ErrTimeout = errors.New("object store call timed out")

// WithTimeouts applies t to every call of s.
func WithTimeouts(s Store, t Timeouts) Store {
	return &timeoutStore{next: s, t: t.withDefaults()}
}

type timeoutStore struct {
	next Store
	t    Timeouts
}

// bound runs fn with a deadline and turns the deadline, when it was ours
// rather than the caller's, into ErrTimeout wrapped around
// context.DeadlineExceeded so Transient sees it.
func bound[T any](ctx context.Context, d time.Duration, fn func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeoutCause(ctx, d, ErrTimeout)
	defer cancel()
	v, err := fn(cctx)
	return v, ourTimeout(ctx, cctx, err)
}

func ourTimeout(parent, child context.Context, err error) error {
	if err != nil && parent.Err() == nil && context.Cause(child) == ErrTimeout {
		return errors.Join(ErrTimeout, context.DeadlineExceeded, err)
	}
	return err
}

func (s *timeoutStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts PutOptions) (Info, error) {
	size, err := BodySize(body)
	if err != nil {
		return Info{}, &Error{Op: "put", Key: key, Err: err}
	}
	d := s.t.Op + time.Duration(float64(size)/float64(s.t.MinRate)*float64(time.Second))
	return bound(ctx, d, func(ctx context.Context) (Info, error) { return s.next.Put(ctx, key, body, opts) })
}

func (s *timeoutStore) Head(ctx context.Context, key string) (Info, error) {
	return bound(ctx, s.t.Op, func(ctx context.Context) (Info, error) { return s.next.Head(ctx, key) })
}

func (s *timeoutStore) Delete(ctx context.Context, keys ...string) error {
	_, err := bound(ctx, s.t.Op+time.Duration(len(keys)/1000)*s.t.Op, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.next.Delete(ctx, keys...)
	})
	return err
}

// Get bounds the wait for the response with Op, then each Read of the body
// with Stall. The body owns the call's context and ends it on Close.
func (s *timeoutStore) Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, Info, error) {
	cctx, cancel := context.WithCancelCause(ctx)
	w := newWatchdog(s.t.Op, func() { cancel(ErrTimeout) })
	rc, info, err := s.next.Get(cctx, key, rng)
	w.disarm()
	if err != nil {
		cancel(nil)
		return nil, Info{}, ourTimeout(ctx, cctx, err)
	}
	return &stallReader{rc: rc, stall: s.t.Stall, parent: ctx, ctx: cctx, cancel: cancel}, info, nil
}

// List bounds the wait for each item with Op; the time the caller spends in
// the loop body does not count.
func (s *timeoutStore) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		cctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		w := newWatchdog(s.t.Op, func() { cancel(ErrTimeout) })
		defer w.disarm()
		for info, err := range s.next.List(cctx, prefix) {
			w.disarm()
			if !yield(info, ourTimeout(ctx, cctx, err)) {
				return
			}
			w.rearm()
		}
	}
}

type stallReader struct {
	rc     io.ReadCloser
	stall  time.Duration
	parent context.Context
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (r *stallReader) Read(p []byte) (int, error) {
	w := newWatchdog(r.stall, func() { r.cancel(ErrTimeout) })
	n, err := r.rc.Read(p)
	w.disarm()
	if err != nil && err != io.EOF {
		err = ourTimeout(r.parent, r.ctx, err)
	}
	return n, err
}

func (r *stallReader) Close() error {
	err := r.rc.Close()
	r.cancel(nil)
	return err
}

// watchdog fires once if not disarmed within d of being armed.
type watchdog struct {
	mu    sync.Mutex
	t     *time.Timer
	d     time.Duration
	fired bool
}

func newWatchdog(d time.Duration, fire func()) *watchdog {
	w := &watchdog{d: d}
	w.t = time.AfterFunc(d, func() {
		w.mu.Lock()
		w.fired = true
		w.mu.Unlock()
		fire()
	})
	return w
}

func (w *watchdog) disarm() { w.t.Stop() }

func (w *watchdog) rearm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.fired {
		w.t.Reset(w.d)
	}
}
