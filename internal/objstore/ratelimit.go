package objstore

import (
	"context"
	"fmt"
	"io"
	"iter"

	"golang.org/x/time/rate"
)

// Limits cap the load ferry puts on a store, so a backlog draining after an
// outage cannot saturate the uplink the application also needs, or run up a
// request bill. Zero means unlimited.
type Limits struct {
	RequestsPerSecond float64
	BytesPerSecond    int64
}

// WithLimits applies l to s with token buckets: one token per request, one
// per byte moved in either direction.
func WithLimits(s Store, l Limits) Store {
	if l.RequestsPerSecond <= 0 && l.BytesPerSecond <= 0 {
		return s
	}
	ls := &limitStore{next: s}
	if l.RequestsPerSecond > 0 {
		ls.reqs = rate.NewLimiter(rate.Limit(l.RequestsPerSecond), max(1, int(l.RequestsPerSecond)))
	}
	if l.BytesPerSecond > 0 {
		// The burst is also the largest single wait, so reads are cut to
		// it; a burst below 64 KiB would make every read a tiny one.
		ls.bytes = rate.NewLimiter(rate.Limit(l.BytesPerSecond), int(max(64<<10, l.BytesPerSecond/4)))
	}
	return ls
}

type limitStore struct {
	next  Store
	reqs  *rate.Limiter
	bytes *rate.Limiter
}

func (s *limitStore) request(ctx context.Context, op, key string) error {
	if s.reqs == nil {
		return nil
	}
	if err := s.reqs.Wait(ctx); err != nil {
		return &Error{Op: op, Key: key, Err: fmt.Errorf("rate limit: %w", err)}
	}
	return nil
}

func (s *limitStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts PutOptions) (Info, error) {
	if err := s.request(ctx, "put", key); err != nil {
		return Info{}, err
	}
	if s.bytes == nil {
		return s.next.Put(ctx, key, body, opts)
	}
	if opts.SHA256 == "" {
		// Hash here, outside the byte budget, so that the backend does not
		// spend the budget on its own hashing pass.
		sum, _, err := HashBody(body)
		if err != nil {
			return Info{}, &Error{Op: "put", Key: key, Err: err}
		}
		opts.SHA256 = sum
	}
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return Info{}, &Error{Op: "put", Key: key, Err: err}
	}
	return s.next.Put(ctx, key, &limitedSeeker{ctx: ctx, r: body, lim: s.bytes, pos: start, paid: start}, opts)
}

func (s *limitStore) Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, Info, error) {
	if err := s.request(ctx, "get", key); err != nil {
		return nil, Info{}, err
	}
	rc, info, err := s.next.Get(ctx, key, rng)
	if err != nil || s.bytes == nil {
		return rc, info, err
	}
	return &limitedReader{ctx: ctx, rc: rc, lim: s.bytes}, info, nil
}

func (s *limitStore) Head(ctx context.Context, key string) (Info, error) {
	if err := s.request(ctx, "head", key); err != nil {
		return Info{}, err
	}
	return s.next.Head(ctx, key)
}

// List pays one request for the listing; a backend pages underneath, so a
// huge listing is under-counted by its page count, which is negligible next
// to the per-object requests that follow it.
func (s *limitStore) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		if err := s.request(ctx, "list", prefix); err != nil {
			yield(Info{}, err)
			return
		}
		for info, err := range s.next.List(ctx, prefix) {
			if !yield(info, err) {
				return
			}
		}
	}
}

func (s *limitStore) Delete(ctx context.Context, keys ...string) error {
	if err := s.request(ctx, "delete", ""); err != nil {
		return err
	}
	return s.next.Delete(ctx, keys...)
}

// limitedSeeker charges the byte budget for each body byte once, the first
// time it is read: a backend that rewinds to compute a checksum or to retry
// a part does not pay twice for the same bytes.
type limitedSeeker struct {
	ctx  context.Context
	r    io.ReadSeeker
	lim  *rate.Limiter
	pos  int64
	paid int64 // bytes before this offset are already paid for
}

func (l *limitedSeeker) Read(p []byte) (int, error) {
	if len(p) > l.lim.Burst() {
		p = p[:l.lim.Burst()]
	}
	n, err := l.r.Read(p)
	l.pos += int64(n)
	if l.pos > l.paid {
		owed := int(min(int64(n), l.pos-l.paid))
		l.paid = l.pos
		if werr := l.lim.WaitN(l.ctx, owed); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (l *limitedSeeker) Seek(offset int64, whence int) (int64, error) {
	pos, err := l.r.Seek(offset, whence)
	if err == nil {
		l.pos = pos
	}
	return pos, err
}

type limitedReader struct {
	ctx context.Context
	rc  io.ReadCloser
	lim *rate.Limiter
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if len(p) > l.lim.Burst() {
		p = p[:l.lim.Burst()]
	}
	n, err := l.rc.Read(p)
	if n > 0 {
		if werr := l.lim.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (l *limitedReader) Close() error { return l.rc.Close() }
