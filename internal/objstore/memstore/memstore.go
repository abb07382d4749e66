// Package memstore is an in-memory objstore.Store for tests and for
// benchmarks that must not measure a disk or a network.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// Store keeps objects in a map guarded by one mutex.
type Store struct {
	mu      sync.Mutex
	objects map[string]object
	now     func() time.Time
}

type object struct {
	data []byte
	info objstore.Info
}

// New returns an empty store.
func New() *Store {
	return &Store{objects: make(map[string]object), now: time.Now}
}

// SetClock makes the store stamp objects with now's times from here on,
// for tests of what ages objects.
func (s *Store) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Put implements objstore.Store.
func (s *Store) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	if err := ctx.Err(); err != nil {
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: err}
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: fmt.Errorf("read body: %w", err)}
	}
	sum, _, err := objstore.HashBody(bytes.NewReader(data))
	if err != nil {
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, exists := s.objects[key]
	if opts.IfNoneMatch && exists {
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: fmt.Errorf("%w: key exists", objstore.ErrPreconditionFailed)}
	}
	if opts.IfMatch != "" && (!exists || cur.info.ETag != opts.IfMatch) {
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: fmt.Errorf("%w: etag does not match", objstore.ErrPreconditionFailed)}
	}
	info := objstore.Info{
		Key:      key,
		Size:     int64(len(data)),
		ETag:     `"` + sum + `"`,
		Modified: s.now(),
		SHA256:   sum,
		Metadata: maps.Clone(opts.Metadata),
	}
	s.objects[key] = object{data: data, info: info}
	return info, nil
}

// Get implements objstore.Store.
func (s *Store) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, Err: err}
	}
	s.mu.Lock()
	obj, ok := s.objects[key]
	s.mu.Unlock()
	if !ok {
		return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, Err: objstore.ErrNotFound}
	}
	data := obj.data
	if rng != nil {
		start, end, err := objstore.Bounds(*rng, int64(len(data)))
		if err != nil {
			return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, Err: err}
		}
		return io.NopCloser(bytes.NewReader(data[start:end])), obj.info, nil
	}
	return io.NopCloser(bytes.NewReader(data)), obj.info, nil
}

// Head implements objstore.Store.
func (s *Store) Head(ctx context.Context, key string) (objstore.Info, error) {
	if err := ctx.Err(); err != nil {
		return objstore.Info{}, &objstore.Error{Op: "head", Key: key, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, ok := s.objects[key]
	if !ok {
		return objstore.Info{}, &objstore.Error{Op: "head", Key: key, Err: objstore.ErrNotFound}
	}
	return obj.info, nil
}

// List implements objstore.Store. It snapshots the matching keys, then
// yields them without holding the lock so the loop body may call the store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	return func(yield func(objstore.Info, error) bool) {
		if err := ctx.Err(); err != nil {
			yield(objstore.Info{}, &objstore.Error{Op: "list", Key: prefix, Err: err})
			return
		}
		s.mu.Lock()
		var infos []objstore.Info
		for k, obj := range s.objects {
			if strings.HasPrefix(k, prefix) {
				infos = append(infos, obj.info)
			}
		}
		s.mu.Unlock()
		slices.SortFunc(infos, func(a, b objstore.Info) int { return strings.Compare(a.Key, b.Key) })
		for _, info := range infos {
			if !yield(info, nil) {
				return
			}
		}
	}
}

// Delete implements objstore.Store.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return &objstore.Error{Op: "delete", Key: strings.Join(keys, ","), Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.objects, k)
	}
	return nil
}

// Corrupt replaces an object's bytes without updating its recorded
// checksum, as a flipped bit on a server's disk would.
func (s *Store) Corrupt(key string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj := s.objects[key]
	obj.data = data
	s.objects[key] = obj
}
