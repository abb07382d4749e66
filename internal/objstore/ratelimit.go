package objstore

import (
	"context"
	"fmt"
	"io"
	"iter"
	"slices"
	"time"

	"golang.org/x/time/rate"
)

// Limits cap the load ferry puts on a store, so a backlog draining after an
// outage cannot saturate the uplink the application also needs, or run up a
// request bill. Zero means unlimited.
type Limits struct {
	// RequestsPerSecond caps calls of every kind, each attempt of a retry
	// included.
	RequestsPerSecond float64
	// BytesPerSecond caps body bytes moved in either direction, put and
	// get drawing on one budget.
	BytesPerSecond int64
	// UploadBytesPerSecond caps put bodies on a budget of their own; when
	// set, puts no longer draw on BytesPerSecond, so a cap on uploads
	// neither slows a restore nor is undercut by a shared budget.
	UploadBytesPerSecond int64
	// OnWait, when set, is told how long a call waited on a limit:
	// kind is LimitRequests or LimitBytes.
	OnWait func(kind string, waited time.Duration)
}

// Kinds of limit, as OnWait and the metrics name them.
const (
	LimitRequests = "requests"
	LimitBytes    = "bytes"
)

// maxRequestBurst keeps the request bucket's size an int however large a
// rate is configured; past a million requests a second the burst no longer
// matters.
const maxRequestBurst = 1 << 20

// WithLimits applies l to s with token buckets: one token per request, one
// per body byte.
func WithLimits(s Store, l Limits) Store {
	if l.RequestsPerSecond <= 0 && l.BytesPerSecond <= 0 && l.UploadBytesPerSecond <= 0 {
		return s
	}
	ls := &limitStore{next: s}
	if l.RequestsPerSecond > 0 {
		burst := max(1, int(min(l.RequestsPerSecond, maxRequestBurst)))
		ls.reqs = &budget{lim: rate.NewLimiter(rate.Limit(l.RequestsPerSecond), burst), kind: LimitRequests, onWait: l.OnWait}
	}
	if l.BytesPerSecond > 0 {
		ls.gets = byteBudget(l.BytesPerSecond, l.OnWait)
		ls.puts = ls.gets
	}
	if l.UploadBytesPerSecond > 0 {
		ls.puts = byteBudget(l.UploadBytesPerSecond, l.OnWait)
	}
	return ls
}

// byteBudget returns a bucket of perSecond bytes. Its burst is also the
// largest single wait, so reads are cut to it; a burst below 64 KiB would
// make every read a tiny one.
func byteBudget(perSecond int64, onWait func(string, time.Duration)) *budget {
	return &budget{lim: rate.NewLimiter(rate.Limit(perSecond), int(max(64<<10, perSecond/4))), kind: LimitBytes, onWait: onWait}
}

// budget is one token bucket, and where its waits are reported.
type budget struct {
	lim    *rate.Limiter
	kind   string
	onWait func(string, time.Duration)
}

// wait takes n tokens, n at most the burst, blocking until they are there.
func (b *budget) wait(ctx context.Context, n int) error {
	start := time.Now()
	err := b.lim.WaitN(ctx, n)
	if b.onWait != nil {
		b.onWait(b.kind, time.Since(start))
	}
	return err
}

type limitStore struct {
	next Store
	reqs *budget
	puts *budget // bodies sent; nil when unlimited
	gets *budget // bodies received; nil when unlimited
}

func (s *limitStore) request(ctx context.Context, op, key string) error {
	if s.reqs == nil {
		return nil
	}
	if err := s.reqs.wait(ctx, 1); err != nil {
		return &Error{Op: op, Key: key, Err: fmt.Errorf("rate limit: %w", err)}
	}
	return nil
}

func (s *limitStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts PutOptions) (Info, error) {
	if err := s.request(ctx, "put", key); err != nil {
		return Info{}, err
	}
	if s.puts == nil {
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
	ls := &limitedSeeker{ctx: ctx, r: body, b: s.puts, pos: start}
	ls.paid.add(0, start)
	return s.next.Put(ctx, key, ls, opts)
}

func (s *limitStore) Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, Info, error) {
	if err := s.request(ctx, "get", key); err != nil {
		return nil, Info{}, err
	}
	rc, info, err := s.next.Get(ctx, key, rng)
	if err != nil || s.gets == nil {
		return rc, info, err
	}
	return &limitedReader{ctx: ctx, rc: rc, b: s.gets}, info, nil
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
// a part does not pay twice for the same bytes. It remembers which ranges
// were paid for, not only how far it got, because a backend that sends
// parts out of order (seeks to part 2, then back to part 1) would otherwise
// have part 1 pass for free.
type limitedSeeker struct {
	ctx  context.Context
	r    io.ReadSeeker
	b    *budget
	pos  int64
	paid spans // the body before the offset Put was called at counts as paid
}

func (l *limitedSeeker) Read(p []byte) (int, error) {
	if burst := l.b.lim.Burst(); len(p) > burst {
		p = p[:burst]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		owed := l.paid.add(l.pos, l.pos+int64(n))
		l.pos += int64(n)
		if owed > 0 {
			if werr := l.b.wait(l.ctx, int(owed)); werr != nil {
				return n, werr
			}
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

// spans is a set of byte ranges [lo, hi), sorted, disjoint and not
// touching. A body read in order stays one span.
type spans []span

type span struct{ lo, hi int64 }

// add puts [lo, hi) into the set and returns how many of its bytes were
// not in it before.
func (s *spans) add(lo, hi int64) int64 {
	if hi <= lo {
		return 0
	}
	fresh := hi - lo
	merged := span{lo, hi}
	// first and last bound the spans that overlap or touch [lo, hi).
	first, _ := slices.BinarySearchFunc(*s, lo, func(sp span, lo int64) int {
		if sp.hi < lo {
			return -1
		}
		return 1
	})
	last := first
	for ; last < len(*s) && (*s)[last].lo <= hi; last++ {
		sp := (*s)[last]
		fresh -= max(0, min(sp.hi, hi)-max(sp.lo, lo))
		merged.lo, merged.hi = min(merged.lo, sp.lo), max(merged.hi, sp.hi)
	}
	*s = slices.Replace(*s, first, last, merged)
	return fresh
}

type limitedReader struct {
	ctx context.Context
	rc  io.ReadCloser
	b   *budget
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if burst := l.b.lim.Burst(); len(p) > burst {
		p = p[:burst]
	}
	n, err := l.rc.Read(p)
	if n > 0 {
		if werr := l.b.wait(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (l *limitedReader) Close() error { return l.rc.Close() }
