package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/lease"
	"github.com/ferrydb/ferry/internal/objstore"
)

// leaseReleaseTimeout bounds the releases at the end of a run: a lease
// left behind only keeps the next writer waiting until it expires.
const leaseReleaseTimeout = 10 * time.Second

var (
	holderOnce sync.Once
	holderName string
)

// LeaseHolder names this process in the leases it takes: the host and pid
// tell an operator where the other writer runs, and a random tail keeps
// two processes apart that share both (containers with their own pid 1).
func LeaseHolder() string {
	holderOnce.Do(func() {
		host, err := os.Hostname()
		if err != nil {
			host = "unknown-host"
		}
		var b [4]byte
		rand.Read(b[:])
		holderName = fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	})
	return holderName
}

// takeLeases takes the replicator's lease on every target of db, when the
// config asks for one, and replaces each target in targets by one whose
// writes wait for that lease to be valid. A lease that another live
// holder has fails the start, naming the holder. Each lease is then
// renewed in the background until the daemon stops; a renewal that finds
// it taken over stops the daemon, and the guarded targets write nothing
// more. The leases are released by releaseLeases once everything that
// writes has stopped.
func (d *daemon) takeLeases(ctx context.Context, db config.DB, targets map[string]objstore.Store) ([]*lease.Lease, error) {
	if db.Lease <= 0 {
		return nil, nil
	}
	var taken []*lease.Lease
	for url, st := range targets {
		// The first attempt is bounded: a store that does not answer
		// leaves ferry unable to tell whether another writer holds the
		// replica, and a start that hangs on it says nothing.
		var l *lease.Lease
		var err error
		if tk := d.o.Takeover; tk != nil && tk.DB == db.Path && tk.Continues.URL == url && tk.Lease != nil {
			l = tk.Lease // taken by the standby that hands the database over
		} else {
			actx, cancel := context.WithTimeout(ctx, max(db.Lease, 10*time.Second))
			l, err = lease.Acquire(actx, st, layout.ReplicatorLeaseKey, LeaseHolder(), db.Lease)
			cancel()
		}
		var held *lease.HeldError
		switch {
		case errors.As(err, &held):
			return taken, fmt.Errorf("database %s: replica %s has another writer: %q holds its lease until %s; stop it, or wait for the lease to expire",
				db.Path, url, held.Holder, held.Expires.UTC().Format(time.RFC3339))
		case err != nil:
			return taken, fmt.Errorf("database %s: replica %s: cannot take the lease: %w", db.Path, url, err)
		}
		d.mu.Lock()
		d.leases = append(d.leases, l)
		d.mu.Unlock()
		taken = append(taken, l)
		targets[url] = lease.Guard(st, l)
		d.o.Log.Info("took the lease", "db", db.Path, "target", url, "holder", l.Holder(), "ttl", db.Lease)
		d.run(ctx, func(ctx context.Context) error {
			// Without a limit at expiry: while the store is down the
			// guarded target holds writes back, and the next renewal that
			// reaches the store tells whether the lease is still ours.
			if err := l.Keep(ctx, false); err != nil {
				return fmt.Errorf("database %s: replica %s: stopped writing: %w", db.Path, url, err)
			}
			return nil
		})
	}
	return taken, nil
}

// releaseLeases gives up every lease, so that another writer can start at
// once rather than after the ttl. Its callers have stopped everything that
// writes through the guarded targets.
func (d *daemon) releaseLeases() {
	d.mu.Lock()
	leases := d.leases
	d.leases = nil
	d.mu.Unlock()
	d.release(leases)
}

// release gives up leases.
func (d *daemon) release(leases []*lease.Lease) {
	if len(leases) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseReleaseTimeout)
	defer cancel()
	for _, l := range leases {
		if err := l.Release(ctx); err != nil && !errors.Is(err, lease.ErrLost) {
			d.o.Log.Warn("could not release the lease; it expires by itself", "lease", l.Key(), "expires", l.Expires(), "err", err)
		}
	}
}
