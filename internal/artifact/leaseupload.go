package artifact

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/lease"
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
	if err := checkKey(key); err != nil {
		return Manifest{}, err
	}
	l, err := lease.Acquire(ctx, store, LeaseKey(key), holder, ttl)
	if err != nil {
		return Manifest{}, fmt.Errorf("upload %s: %w", dir, err)
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The renewals stop with the upload, without cancelling what the
	// upload's context still carries: the cause of a lost lease.
	kctx, stop := context.WithCancel(rctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		// A round must not outlive its lease: past its expiry another
		// machine may take it over, and two rounds would run at once.
		if err := l.Keep(kctx, true); err != nil {
			cancel(err)
		}
	})

	m, err := upload(rctx, store, key, dir, opts, l.Renew)
	stop()
	wg.Wait()
	if cause := context.Cause(rctx); err != nil && errors.Is(cause, ErrLeaseLost) {
		err = fmt.Errorf("upload %s: cancelled: %w", dir, cause)
	}

	relCtx, relCancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer relCancel()
	rerr := l.Release(relCtx)
	switch {
	case rerr == nil || errors.Is(rerr, ErrLeaseLost):
		// A lost lease is no longer ours to release.
		return m, err
	case err != nil:
		return Manifest{}, errors.Join(err, fmt.Errorf("release after the failed upload: %w", rerr))
	default:
		return m, fmt.Errorf("artifact %s uploaded, but releasing its lease failed (it expires by itself at %s): %w",
			key, l.Expires().UTC().Format(time.RFC3339), rerr)
	}
}
