package artifact

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/lease"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

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
		if _, err := acquire(ctx, st, "k", "b", time.Minute); err != nil {
			t.Fatalf("lease still held after a finished round: %v", err)
		}
	})

	t.Run("held elsewhere", func(t *testing.T) {
		st := memstore.New()
		if _, err := acquire(ctx, st, "k", "other", time.Minute); err != nil {
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
				_, err := acquire(ctx, mem, "k", "b", time.Minute)
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
		if _, err := acquire(ctx, st, "k", "b", time.Minute); err != nil {
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
		if _, err := acquire(ctx, mem, "k", "b", time.Minute); !errors.Is(err, ErrLeaseHeld) {
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

// acquire takes the lease that UploadWithLease takes on key.
func acquire(ctx context.Context, st objstore.Store, key, holder string, ttl time.Duration) (*lease.Lease, error) {
	return lease.Acquire(ctx, st, LeaseKey(key), holder, ttl)
}

// putLease writes body as the lease record of key "k", as another machine
// taking it over would.
func putLease(t *testing.T, st objstore.Store, body string) {
	t.Helper()
	if _, err := st.Put(context.Background(), LeaseKey("k"), stringsReader(body), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
