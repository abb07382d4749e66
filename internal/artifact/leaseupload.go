package artifact

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// releaseTimeout bounds the Release at the end of UploadWithLease, which
// runs even when the caller's context has ended: a lease left behind
// blocks every other machine until it expires.
const releaseTimeout = 30 * time.Second

// UploadWithLease uploads dir as the artifact key while holding the lease
// named key, so that of several machines running the same round only one
// uploads at a time. It acquires the lease (failing with ErrLeaseHeld if
// another holder has it), renews it every ttl/3 while the upload runs,
// renews it once more just before writing the manifest, and releases it
// at the end whether the upload succeeded or not, so that after a failed
// round another machine can retry at once.
//
// If the lease is lost (taken over, or expired because renewals kept
// failing), the upload is cancelled and the error matches ErrLeaseLost.
// If the upload succeeded but the release failed, the Manifest is
// returned with an error saying so; the lease then expires by itself.
func UploadWithLease(ctx context.Context, store objstore.Store, key, dir, holder string, ttl time.Duration, opts UploadOptions) (Manifest, error) {
	lease, err := Acquire(ctx, store, key, holder, ttl)
	if err != nil {
		return Manifest{}, fmt.Errorf("upload %s: %w", dir, err)
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { lease.keepAlive(rctx, stop, cancel) })

	m, err := upload(rctx, store, key, dir, opts, lease.Renew)
	close(stop)
	wg.Wait()
	if cause := context.Cause(rctx); err != nil && errors.Is(cause, ErrLeaseLost) {
		err = fmt.Errorf("upload %s: cancelled: %w", dir, cause)
	}

	relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer relCancel()
	rerr := lease.Release(relCtx)
	switch {
	case rerr == nil || errors.Is(rerr, ErrLeaseLost):
		// A lost lease is no longer ours to release.
		return m, err
	case err != nil:
		return Manifest{}, errors.Join(err, fmt.Errorf("release after the failed upload: %w", rerr))
	default:
		return m, fmt.Errorf("artifact %s uploaded, but releasing its lease failed (it expires by itself at %s): %w",
			key, lease.Expires().UTC().Format(time.RFC3339), rerr)
	}
}

// keepAlive renews the lease every ttl/3 until stop closes. It cancels the
// round through cancel when the lease is lost, or when renewals have kept
// failing until the lease expired: past that point another machine may
// take it over, and two rounds would run at once.
func (l *Lease) keepAlive(ctx context.Context, stop <-chan struct{}, cancel context.CancelCauseFunc) {
	interval := max(l.ttl/3, time.Millisecond)
	retry := max(l.ttl/20, time.Millisecond)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := l.Renew(ctx)
		switch {
		case err == nil:
			t.Reset(interval)
		case errors.Is(err, ErrLeaseLost):
			cancel(err)
			return
		case ctx.Err() != nil:
			return
		case !l.now().Before(l.Expires()):
			cancel(fmt.Errorf("lease %s: %w: it expired while renewals failed: %w", l.key, ErrLeaseLost, err))
			return
		default:
			t.Reset(retry)
		}
	}
}
