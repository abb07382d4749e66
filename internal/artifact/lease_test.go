package artifact

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
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
				if !errors.As(err, &held) || !errors.Is(err, ErrLeaseHeld) {
					t.Fatalf("loser got %v, want ErrLeaseHeld", err)
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
			mustErr(t, err, ErrLeaseHeld, `"a"`, "2025-01-02T03:05:05Z")

			// a renews: the lease now runs to 03:05:35.
			if err := a.Renew(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(45 * time.Second)
			_, err = Acquire(ctx, st, "k", "b", time.Minute, WithClock(clk.Now))
			mustErr(t, err, ErrLeaseHeld, `"a"`)

			clk.Advance(16 * time.Second)
			bl, err := Acquire(ctx, st, "k", "b", time.Minute, WithClock(clk.Now))
			if err != nil {
				t.Fatalf("takeover of an expired lease: %v", err)
			}
			mustErr(t, a.Renew(ctx), ErrLeaseLost, `"b"`)
			mustErr(t, a.Release(ctx), ErrLeaseLost)
			if err := bl.Renew(ctx); err != nil {
				t.Fatalf("new holder cannot renew after the old one gave up: %v", err)
			}
			_, err = Acquire(ctx, st, "k", "c", time.Minute, WithClock(clk.Now))
			mustErr(t, err, ErrLeaseHeld, `"b"`)
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
	if _, err := Acquire(ctx, st, "k", "b", 200*time.Millisecond); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second holder got %v, want ErrLeaseHeld", err)
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
			mustErr(t, a.Renew(ctx), ErrLeaseLost)
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
			mustErr(t, err, nil, "k.lease", "delete the object")
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
	if _, err := st.Put(context.Background(), LeaseKey("k"), stringsReader(body), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestUploadWithLease(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("payload"), 0o644)

	t.Run("success releases", func(t *testing.T) {
		st := memstore.New()
		if _, err := UploadWithLease(ctx, st, "k", src, "a", time.Minute, UploadOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := Peek(ctx, st, "k"); err != nil {
			t.Fatal(err)
		}
		if _, err := Acquire(ctx, st, "k", "b", time.Minute); err != nil {
			t.Fatalf("lease still held after a finished round: %v", err)
		}
	})

	t.Run("held elsewhere", func(t *testing.T) {
		st := memstore.New()
		if _, err := Acquire(ctx, st, "k", "other", time.Minute); err != nil {
			t.Fatal(err)
		}
		_, err := UploadWithLease(ctx, st, "k", src, "a", time.Minute, UploadOptions{})
		mustErr(t, err, ErrLeaseHeld, `"other"`)
		if _, err := st.Head(ctx, TarKey("k")); !objstore.IsNotFound(err) {
			t.Errorf("uploaded without the lease: %v", err)
		}
	})

	t.Run("renewed while the round runs", func(t *testing.T) {
		mem := memstore.New()
		// The tar takes four ttls to send; renewals every ttl/3 must keep
		// anyone else out all along.
		const ttl = 300 * time.Millisecond
		var probes []error
		st := &failingStore{Store: mem, key: TarKey("k"), hook: func(ctx context.Context) error {
			for range 4 {
				time.Sleep(ttl)
				_, err := Acquire(ctx, mem, "k", "b", time.Minute)
				probes = append(probes, err)
			}
			return nil
		}}
		if _, err := UploadWithLease(ctx, st, "k", src, "a", ttl, UploadOptions{}); err != nil {
			t.Fatal(err)
		}
		for i, err := range probes {
			if !errors.Is(err, ErrLeaseHeld) {
				t.Errorf("after %d ttls another holder got %v, want ErrLeaseHeld", i+1, err)
			}
		}
	})

	t.Run("failed round releases", func(t *testing.T) {
		boom := errors.New("store unavailable")
		st := &failingStore{Store: memstore.New(), key: TarKey("k"), hook: func(context.Context) error { return boom }}
		_, err := UploadWithLease(ctx, st, "k", src, "a", time.Minute, UploadOptions{})
		mustErr(t, err, boom)
		if _, err := Acquire(ctx, st, "k", "b", time.Minute); err != nil {
			t.Fatalf("lease not released after a failed round: %v", err)
		}
		if _, err := st.Head(ctx, ManifestKey("k")); !objstore.IsNotFound(err) {
			t.Errorf("failed round left a manifest: %v", err)
		}
	})

	t.Run("lost lease cancels the round", func(t *testing.T) {
		mem := memstore.New()
		// While the tar is on its way, another machine takes the lease
		// over; the background renewal must notice and cancel the Put.
		st := &failingStore{Store: mem, key: TarKey("k"), hook: func(ctx context.Context) error {
			putLease(t, mem, `{"holder":"thief","expires":"2099-01-01T00:00:00Z","token":"t"}`)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Second):
				return errors.New("upload was not cancelled")
			}
		}}
		start := time.Now()
		_, err := UploadWithLease(ctx, st, "k", src, "a", 150*time.Millisecond, UploadOptions{})
		mustErr(t, err, ErrLeaseLost, `"thief"`)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("lost lease noticed after %s", d)
		}
		if _, err := mem.Head(ctx, ManifestKey("k")); !objstore.IsNotFound(err) {
			t.Errorf("round that lost its lease wrote a manifest: %v", err)
		}
		if _, err := Acquire(ctx, mem, "k", "b", time.Minute); !errors.Is(err, ErrLeaseHeld) {
			t.Errorf("the thief's lease was released by the loser: %v", err)
		}
	})

	t.Run("lease lost just before commit", func(t *testing.T) {
		mem := memstore.New()
		// No time for a background renewal: the check before the
		// manifest is what stops this round.
		st := &failingStore{Store: mem, key: TarKey("k"), hook: func(context.Context) error {
			putLease(t, mem, `{"holder":"thief","expires":"2099-01-01T00:00:00Z","token":"t"}`)
			return nil
		}}
		_, err := UploadWithLease(ctx, st, "k", src, "a", time.Hour, UploadOptions{})
		mustErr(t, err, ErrLeaseLost)
		if _, err := mem.Head(ctx, ManifestKey("k")); !objstore.IsNotFound(err) {
			t.Errorf("round that lost its lease wrote a manifest: %v", err)
		}
	})
}
