package lease

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// TestGuardHoldsWritesToTheLease walks a holder through an outage and a
// takeover: its writes go out while the lease is valid, wait while its
// renewals fail, resume after one succeeds, and stop for good once
// another holder has the lease; reads pass throughout.
func TestGuardHoldsWritesToTheLease(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	clk := newFakeClock()
	a, err := Acquire(ctx, mem, "leases/replicator", "a", 30*time.Second, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	st := Guard(mem, a)
	put := func(ctx context.Context, key string) error {
		_, err := st.Put(ctx, key, strings.NewReader(key), objstore.PutOptions{})
		return err
	}
	if err := put(ctx, "one"); err != nil {
		t.Fatalf("write under a fresh lease: %v", err)
	}

	// No renewal for 25s: 5s are left, less than the ttl/3 a write needs.
	clk.Advance(25 * time.Second)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = put(short, "two")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write with 5s of lease left: %v; want it to wait until its context ends", err)
	}
	if _, err := mem.Head(ctx, "two"); !objstore.IsNotFound(err) {
		t.Fatalf("a write went out on a lease about to expire: %v", err)
	}
	if err := st.Delete(short, "one"); err == nil {
		t.Fatal("a delete went out on a lease about to expire")
	}

	// A renewal that reaches the store lets the waiting write go.
	done := make(chan error, 1)
	go func() { done <- put(ctx, "two") }()
	if err := a.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write after the renewal: %v", err)
	}

	// Renewals fail until the lease expires, and b takes it over.
	clk.Advance(31 * time.Second)
	if _, err := Acquire(ctx, mem, "leases/replicator", "b", 30*time.Second, WithClock(clk.Now)); err != nil {
		t.Fatal(err)
	}
	go func() { done <- put(ctx, "three") }()
	mustErr(t, a.Renew(ctx), ErrLost, `now held by "b"`)
	mustErr(t, <-done, ErrLost, `"b"`)
	mustErr(t, put(ctx, "four"), ErrLost)
	for _, k := range []string{"three", "four"} {
		if _, err := mem.Head(ctx, k); !objstore.IsNotFound(err) {
			t.Errorf("the holder that lost its lease wrote %s: %v", k, err)
		}
	}
	rc, _, err := st.Get(ctx, "one", nil)
	if err != nil {
		t.Fatalf("read after the loss: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "one" {
		t.Errorf("read %q", b)
	}
}

// TestGuardRefusesAfterRelease checks that a holder that gave its lease
// up writes nothing more, rather than waiting for a renewal that cannot
// come.
func TestGuardRefusesAfterRelease(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	a, err := Acquire(ctx, mem, "l", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = Guard(mem, a).Put(ctx, "x", strings.NewReader("x"), objstore.PutOptions{})
	mustErr(t, err, ErrLost, "released")
}

// TestKeepRenewsAndNoticesATakeover runs Keep on the wall clock: it keeps
// a rival out for several ttls, then returns ErrLost, naming the new
// holder, once the record was overwritten behind its back.
func TestKeepRenewsAndNoticesATakeover(t *testing.T) {
	ctx := context.Background()
	mem := memstore.New()
	const ttl = 300 * time.Millisecond
	a, err := Acquire(ctx, mem, "l", "a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	kept := make(chan error, 1)
	go func() { kept <- a.Keep(ctx, false) }()
	// Wait for renewals, each an event on Changed, across three ttls.
	deadline := time.Now().Add(3 * ttl)
	for time.Now().Before(deadline) {
		<-a.Changed()
		if _, err := Acquire(ctx, mem, "l", "b", ttl); !errors.Is(err, ErrHeld) {
			t.Fatalf("a rival got %v while the lease was kept; want ErrHeld", err)
		}
	}
	if _, err := mem.Put(ctx, "l", strings.NewReader(`{"holder":"thief","expires":"2099-01-01T00:00:00Z","token":"t"}`), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	mustErr(t, <-kept, ErrLost, `now held by "thief"`)
	if a.Valid(0) || a.Err() == nil {
		t.Error("the lease still counts as valid after the loss")
	}
}
