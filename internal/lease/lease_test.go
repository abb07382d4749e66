package lease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/objstore/s3store"
	"github.com/ferrydb/ferry/internal/testenv"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// backends are the stores every lease test runs against: conditional
// writes are each backend's own, so each must keep two holders apart. The
// s3 one needs the server that scripts/test starts.
var backends = []struct {
	name string
	open func(t *testing.T) objstore.Store
}{
	{"mem", func(*testing.T) objstore.Store { return memstore.New() }},
	{"file", func(t *testing.T) objstore.Store {
		s, err := filestore.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"s3", func(t *testing.T) objstore.Store {
		srv := testenv.S3(t)
		st, err := s3store.New(context.Background(), s3store.Config{
			Bucket: testenv.Bucket(t, srv), Endpoint: srv.Endpoint, Region: srv.Region, ForcePathStyle: true,
			AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
		})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}},
}

func mustErr(t testing.TB, err error, target error, substr ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one matching %v", target)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("error %q does not match %v", err, target)
	}
	for _, s := range substr {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not mention %q", err, s)
		}
	}
}

func TestLeaseOneWinner(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st := b.open(t)
			const n = 8
			var wins atomic.Int32
			var winner atomic.Value
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					l, err := Acquire(context.Background(), st, "jobs/nightly", fmt.Sprintf("host-%d", i), time.Minute)
					errs[i] = err
					if err == nil {
						wins.Add(1)
						winner.Store(l.Holder())
					}
				})
			}
			close(start)
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("%d holders won the lease: %v", wins.Load(), errs)
			}
			for _, err := range errs {
				if err == nil {
					continue
				}
				var held *HeldError
				if !errors.As(err, &held) || !errors.Is(err, ErrHeld) {
					t.Fatalf("loser got %v, want ErrHeld", err)
				}
				if held.Holder != winner.Load().(string) {
					t.Errorf("loser told the holder is %q; it is %q", held.Holder, winner.Load())
				}
			}
		})
	}
}

func TestLeaseExpiryAndTakeover(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st := b.open(t)
			clk := newFakeClock()
			a, err := Acquire(ctx, st, "k", "a", time.Minute, WithClock(clk.Now))
			if err != nil {
				t.Fatal(err)
			}

			clk.Advance(30 * time.Second)
			_, err = Acquire(ctx, st, "k", "b", time.Minute, WithClock(clk.Now))
			mustErr(t, err, ErrHeld, `"a"`, "2025-01-02T03:05:05Z")

			// a renews: the lease now runs to 03:05:35.
			if err := a.Renew(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(45 * time.Second)
			_, err = Acquire(ctx, st, "k", "b", time.Minute, WithClock(clk.Now))
			mustErr(t, err, ErrHeld, `"a"`)

			clk.Advance(16 * time.Second)
			bl, err := Acquire(ctx, st, "k", "b", time.Minute, WithClock(clk.Now))
			if err != nil {
				t.Fatalf("takeover of an expired lease: %v", err)
			}
			mustErr(t, a.Renew(ctx), ErrLost, `"b"`)
			mustErr(t, a.Release(ctx), ErrLost)
			if err := bl.Renew(ctx); err != nil {
				t.Fatalf("new holder cannot renew after the old one gave up: %v", err)
			}
			_, err = Acquire(ctx, st, "k", "c", time.Minute, WithClock(clk.Now))
			mustErr(t, err, ErrHeld, `"b"`)
		})
	}
}

// TestLeaseRealTime uses the wall clock once, with a short ttl, to check
// that nothing depends on the injected clock.
func TestLeaseRealTime(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	if _, err := Acquire(ctx, st, "k", "a", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(ctx, st, "k", "b", 200*time.Millisecond); !errors.Is(err, ErrHeld) {
		t.Fatalf("second holder got %v, want ErrHeld", err)
	}
	time.Sleep(250 * time.Millisecond)
	if _, err := Acquire(ctx, st, "k", "b", 200*time.Millisecond); err != nil {
		t.Fatalf("takeover after expiry: %v", err)
	}
}

func TestLeaseRelease(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st := b.open(t)
			clk := newFakeClock()
			a, err := Acquire(ctx, st, "k", "a", time.Hour, WithClock(clk.Now))
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.Release(ctx); err != nil {
				t.Errorf("second release: %v", err)
			}
			mustErr(t, a.Renew(ctx), ErrLost)
			// No time passes: a released lease is free at once.
			if _, err := Acquire(ctx, st, "k", "b", time.Hour, WithClock(clk.Now)); err != nil {
				t.Fatalf("acquire after release: %v", err)
			}
		})
	}
}

func TestLeaseRefusesBadRecords(t *testing.T) {
	ctx := context.Background()
	for name, body := range map[string]string{
		"garbage":    "not json",
		"no token":   `{"holder":"x","expires":"2099-01-01T00:00:00Z"}`,
		"extra data": `{"holder":"x","expires":"2099-01-01T00:00:00Z","token":"t","boss":true}`,
	} {
		t.Run(name, func(t *testing.T) {
			st := memstore.New()
			putLease(t, st, body)
			_, err := Acquire(ctx, st, "k", "me", time.Minute)
			mustErr(t, err, nil, "k", "delete the object")
		})
	}
	if _, err := Acquire(ctx, memstore.New(), "k", "", time.Minute); err == nil {
		t.Error("empty holder accepted")
	}
	if _, err := Acquire(ctx, memstore.New(), "k", "me", 0); err == nil {
		t.Error("zero ttl accepted")
	}
}

func putLease(t *testing.T, st objstore.Store, body string) {
	t.Helper()
	if _, err := st.Put(context.Background(), "k", strings.NewReader(body), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
