package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/objstore/storetest"
)

func TestPrefixConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) objstore.Store {
		return objstore.WithPrefix(memstore.New(), "tenants/a.db")
	}, storetest.Options{})
}

func TestPoolConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) objstore.Store {
		return objstore.WithPool(memstore.New(), 2)
	}, storetest.Options{})
}

// Two views of one store never see each other's keys, even when one
// name is the start of the other's.
func TestPrefixViewsAreApart(t *testing.T) {
	ctx := context.Background()
	base := memstore.New()
	a, a2 := objstore.WithPrefix(base, "t/a.db"), objstore.WithPrefix(base, "t/a.db2/")
	for _, s := range []objstore.Store{a, a2} {
		if _, err := s.Put(ctx, "segments/1.seg", bytes.NewReader([]byte("x")), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	for info, err := range a.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if len(keys) != 1 || keys[0] != "segments/1.seg" {
		t.Fatalf("view a lists %q", keys)
	}
	if err := a.Delete(ctx, "segments/1.seg"); err != nil {
		t.Fatal(err)
	}
	if _, err := a2.Head(ctx, "segments/1.seg"); err != nil {
		t.Fatalf("deleting through one view removed the other's key: %v", err)
	}
	if _, err := base.Head(ctx, "t/a.db2/segments/1.seg"); err != nil {
		t.Fatalf("the key is not where the view put it: %v", err)
	}
}

// gatedStore holds every Put until the test lets one through, counting
// those in flight.
type gatedStore struct {
	objstore.Store
	gate           chan struct{}
	inFlight, peak atomic.Int32
}

func (s *gatedStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-s.gate:
	case <-ctx.Done():
		return objstore.Info{}, ctx.Err()
	}
	return s.Store.Put(ctx, key, body, opts)
}

// A pool of n lets n calls through at a time; the others wait their turn,
// and one whose context ends while it waits gives up without a call.
func TestPoolBounds(t *testing.T) {
	base := &gatedStore{Store: memstore.New(), gate: make(chan struct{})}
	pool := objstore.WithPool(base, 2)
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := pool.Put(context.Background(), fmt.Sprint(i), bytes.NewReader(nil), objstore.PutOptions{}); err != nil {
				t.Error(err)
			}
		}()
	}
	// Two in flight before any is let through; then one at a time, each
	// leaving room for exactly one more.
	for base.inFlight.Load() < 2 {
		runtime.Gosched()
	}
	for range 6 {
		base.gate <- struct{}{}
	}
	wg.Wait()
	if p := base.peak.Load(); p != 2 {
		t.Fatalf("%d puts in flight at once, want 2", p)
	}

	// Fill the pool, then ask with a context that ends.
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool.Put(context.Background(), fmt.Sprint("held", i), bytes.NewReader(nil), objstore.PutOptions{})
		}()
	}
	for base.inFlight.Load() < 2 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := pool.Put(ctx, "late", bytes.NewReader(nil), objstore.PutOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a put that found the pool full until its deadline returned %v", err)
	}
	base.gate <- struct{}{}
	base.gate <- struct{}{}
	wg.Wait()
}
