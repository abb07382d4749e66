package ferry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/lease"
	"github.com/ferrydb/ferry/internal/objstore"
)

// LeaseStatus is the lease a Replicator holds on one replica.
type LeaseStatus struct {
	Replica string    `json:"replica"`
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
	// Lost says why the lease is no longer held, when it is not.
	Lost string `json:"lost,omitempty"`
}

// leases are a Replicator's leases, one per replica URL.
type leases struct {
	urls []string
	held map[string]*lease.Lease
}

// takeLeases takes the replicator's lease on every target, when ttl is
// set, and replaces each target by one whose writes wait for its lease.
func takeLeases(ctx context.Context, targets map[string]objstore.Store, ttl time.Duration) (*leases, error) {
	ls := &leases{held: map[string]*lease.Lease{}}
	if ttl == 0 {
		return ls, nil
	}
	for url, st := range targets {
		l, err := lease.Acquire(ctx, st, layout.ReplicatorLeaseKey, daemon.LeaseHolder(), ttl)
		var held *lease.HeldError
		switch {
		case errors.As(err, &held):
			ls.release()
			return nil, fmt.Errorf("ferry: replica %s has another writer: %q holds its lease until %s", url, held.Holder, held.Expires.UTC().Format(time.RFC3339))
		case err != nil:
			ls.release()
			return nil, fmt.Errorf("ferry: replica %s: cannot take the lease: %w", url, err)
		}
		ls.urls = append(ls.urls, url)
		ls.held[url] = l
		targets[url] = lease.Guard(st, l)
	}
	slices.Sort(ls.urls)
	return ls, nil
}

// keep renews every lease until ctx ends; one found taken over calls stop.
// It returns what reports the first lease lost.
func (ls *leases) keep(ctx context.Context, stop context.CancelFunc) func() error {
	var mu sync.Mutex
	var lost error
	for url, l := range ls.held {
		go func() {
			if err := l.Keep(ctx, false); err != nil && ctx.Err() == nil {
				mu.Lock()
				if lost == nil {
					lost = fmt.Errorf("ferry: replica %s: stopped writing: %w", url, err)
				}
				mu.Unlock()
				stop()
			}
		}()
	}
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		return lost
	}
}

// release gives every lease up, so that another writer can start at once.
func (ls *leases) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, l := range ls.held {
		l.Release(ctx)
	}
}

func (ls *leases) status() []LeaseStatus {
	var out []LeaseStatus
	for _, url := range ls.urls {
		l := ls.held[url]
		s := LeaseStatus{Replica: url, Holder: l.Holder(), Expires: l.Expires()}
		if err := l.Err(); err != nil {
			s.Lost = err.Error()
		}
		out = append(out, s)
	}
	return out
}
