package lease

import (
	"context"
	"io"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// Guard returns store with its writes (Put, Delete) held to l: each waits
// until the lease is valid by the local clock with ttl/3 to spare, and
// fails with an error matching ErrLost once the lease was lost or released.
// So a holder whose renewals fail (the store is down) stops writing before
// its lease can expire, and resumes after the next renewal; and a holder
// that lost its lease never writes again. Reads pass through: they cannot
// harm another holder's replica.
//
// The margin leaves room for a write that starts just before the check
// fails to finish before anyone else may take the lease over, and for the
// skew between clocks. It cannot cover a write that stalls for longer than
// that (see Lease); what a replicator writes is verifiable for that reason.
func Guard(store objstore.Store, l *Lease) objstore.Store {
	return &guarded{Store: store, l: l, margin: l.ttl / 3}
}

type guarded struct {
	objstore.Store
	l      *Lease
	margin time.Duration
}

func (g *guarded) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	if err := g.wait(ctx, "put", key); err != nil {
		return objstore.Info{}, err
	}
	return g.Store.Put(ctx, key, body, opts)
}

func (g *guarded) Delete(ctx context.Context, keys ...string) error {
	key := ""
	if len(keys) > 0 {
		key = keys[0]
	}
	if err := g.wait(ctx, "delete", key); err != nil {
		return err
	}
	return g.Store.Delete(ctx, keys...)
}

// wait returns once the lease is valid, or with the reason it never will
// be again, or when ctx ends.
func (g *guarded) wait(ctx context.Context, op, key string) error {
	for {
		// Changed before the checks, so that a renewal between them still
		// wakes the wait below.
		changed := g.l.Changed()
		if err := g.l.Err(); err != nil {
			return &objstore.Error{Op: op, Key: key, Err: err}
		}
		if g.l.Valid(g.margin) {
			return nil
		}
		select {
		case <-ctx.Done():
			return &objstore.Error{Op: op, Key: key, Err: context.Cause(ctx)}
		case <-changed:
		}
	}
}
