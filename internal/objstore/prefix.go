package objstore

import (
	"context"
	"io"
	"iter"
	"strings"
)

// WithPrefix returns the store under prefix of s: key k of the result is
// key prefix+k of s, and listings yield keys with prefix taken off. A
// fleet of databases replicated to one bucket shares one store, with its
// connections, limits and pool of requests, through a WithPrefix view
// each, rather than opening a client per database.
//
// prefix must end in "/" unless it is empty, so that one view never sees
// another's keys ("a.db/" is not a prefix of "a.db2/...").
func WithPrefix(s Store, prefix string) Store {
	if prefix == "" {
		return s
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &prefixStore{next: s, prefix: prefix}
}

type prefixStore struct {
	next   Store
	prefix string
}

func (s *prefixStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts PutOptions) (Info, error) {
	info, err := s.next.Put(ctx, s.prefix+key, body, opts)
	info.Key = strings.TrimPrefix(info.Key, s.prefix)
	return info, err
}

func (s *prefixStore) Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, Info, error) {
	rc, info, err := s.next.Get(ctx, s.prefix+key, rng)
	info.Key = strings.TrimPrefix(info.Key, s.prefix)
	return rc, info, err
}

func (s *prefixStore) Head(ctx context.Context, key string) (Info, error) {
	info, err := s.next.Head(ctx, s.prefix+key)
	info.Key = strings.TrimPrefix(info.Key, s.prefix)
	return info, err
}

func (s *prefixStore) List(ctx context.Context, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		for info, err := range s.next.List(ctx, s.prefix+prefix) {
			info.Key = strings.TrimPrefix(info.Key, s.prefix)
			if !yield(info, err) {
				return
			}
		}
	}
}

func (s *prefixStore) Delete(ctx context.Context, keys ...string) error {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.prefix + k
	}
	return s.next.Delete(ctx, full...)
}
