package objstore

import (
	"context"
	"io"
	"iter"
)

// WithPool bounds the calls in flight on s to n: a call past the bound
// waits for one to finish, first come first served. Every database of a
// fleet shares its bucket's pool, so one with a large backlog queues its
// requests behind the others' rather than taking every connection, and a
// bucket that stalls holds up only its own pool.
//
// A call holds its place until it returns: a Get until its response
// begins, not while its body is read, and a List not at all. Callers read
// a body, or walk a listing, while making other calls on the same store;
// holding places through that would let a full pool of them wait on each
// other for ever.
func WithPool(s Store, n int) Store {
	if n <= 0 {
		return s
	}
	return &poolStore{next: s, slots: make(chan struct{}, n)}
}

type poolStore struct {
	next  Store
	slots chan struct{}
}

func (s *poolStore) acquire(ctx context.Context) error {
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *poolStore) release() { <-s.slots }

func (s *poolStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts PutOptions) (Info, error) {
	if err := s.acquire(ctx); err != nil {
		return Info{}, err
	}
	defer s.release()
	return s.next.Put(ctx, key, body, opts)
}

func (s *poolStore) Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, Info, error) {
	if err := s.acquire(ctx); err != nil {
		return nil, Info{}, err
	}
	defer s.release()
	return s.next.Get(ctx, key, rng)
}

func (s *poolStore) Head(ctx context.Context, key string) (Info, error) {
	if err := s.acquire(ctx); err != nil {
		return Info{}, err
	}
	defer s.release()
	return s.next.Head(ctx, key)
}

func (s *poolStore) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return s.next.List(ctx, prefix)
}

func (s *poolStore) Delete(ctx context.Context, keys ...string) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	return s.next.Delete(ctx, keys...)
}
