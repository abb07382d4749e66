package lease

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Keep renews the lease every ttl/3 until ctx ends, and retries a renewal
// that failed every ttl/20, each attempt bounded to ttl/3 so that a store
// that hangs cannot hold the next attempt back. It returns nil when ctx
// ends, and an error matching ErrLost when a renewal found the lease taken
// over or released.
//
// A renewal that fails for another reason (the store is down) is retried.
// With stopAtExpiry, Keep gives up with ErrLost once the lease has expired
// by the local clock, for a round that must not outlive its lease. Without
// it, Keep goes on trying: the compare-and-swap of the next renewal that
// reaches the store tells whether someone else took the lease meanwhile,
// and until then Valid is false, so that writers that check it wait.
func (l *Lease) Keep(ctx context.Context, stopAtExpiry bool) error {
	interval := max(l.ttl/3, time.Millisecond)
	retry := max(l.ttl/20, time.Millisecond)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, interval)
		err := l.Renew(rctx)
		cancel()
		switch {
		case err == nil:
			t.Reset(interval)
		case errors.Is(err, ErrLost):
			return err
		case ctx.Err() != nil:
			return nil
		case stopAtExpiry && !l.now().Before(l.Expires()):
			return fmt.Errorf("lease %s: %w: it expired while renewals failed: %w", l.key, ErrLost, err)
		default:
			t.Reset(retry)
		}
	}
}
