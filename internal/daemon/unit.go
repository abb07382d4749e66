package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/lease"
)

// The states a database is in, as /status reports them.
const (
	// stateActive: a Replicator holds the database and captures it.
	stateActive = "active"
	// stateIdle: every transaction is on every target, and nothing holds
	// the database until it is written (see capture.ErrIdle).
	stateIdle = "idle"
	// stateFailed: the database could not be opened; it is tried again
	// when it is next written, or at a reload.
	stateFailed = "failed"
	// stateStarting: found at start and waiting its turn to be opened
	// and brought up to date.
	stateStarting = "starting"
)

// unit is one database the daemon replicates, whether it is held by a
// running Replicator or idle. It owns that database's lifecycle: opening a
// Replicator, running it, taking what it left when it goes idle, and
// stopping it for good.
type unit struct {
	d  *daemon
	db config.DB
	co capture.Options
	// entry is the dir entry the database was found under; nil for a
	// database the config lists by path, which never goes idle.
	entry *dirEntry
	// events, for a database found under a dir entry, carries the
	// fleet's file events to its Replicator, which then needs no watcher
	// of its own: a process may have only so many.
	events chan struct{}
	// lastEvent is when the fleet last saw the log written, in Unix
	// nanoseconds: an event that came while the Replicator was going
	// idle may be a commit it did not read.
	lastEvent atomic.Int64
	// leases are the replica leases held for a database listed by path,
	// released when a reload drops it.
	leases []*lease.Lease
	// ctx ends when the unit stops for good; stop ends it.
	ctx  context.Context
	stop context.CancelFunc

	// opening is held while a Replicator is opened, which may take
	// requests to the stores: mu is not, so that Status and State answer
	// meanwhile. It guards co and checked.
	opening sync.Mutex

	mu sync.Mutex
	// r is the running Replicator, nil while idle or failed; ended is
	// closed when its Run returns.
	r     *capture.Replicator
	ended chan struct{}
	// last is the Status the last Replicator left; idle what it left for
	// waking it.
	last  capture.Status
	idle  capture.Idle
	state string
	// checked says that the replicas' keys were checked (daemon.checkKeys)
	// before a Replicator first wrote to them.
	checked bool
	// swept and scrubbed hold the txid at the last gc sweep and scrub of
	// a database found under a dir entry, and when they ran.
	sweptTXID, scrubbedTXID uint64
	sweptAt, scrubbedAt     time.Time
}

// newUnit returns the unit of db, not started. co is complete but for
// what the database's saved state decides.
func (d *daemon) newUnit(ctx context.Context, db config.DB, co capture.Options, entry *dirEntry) *unit {
	u := &unit{d: d, db: db, co: co, entry: entry, state: stateIdle}
	u.ctx, u.stop = context.WithCancel(ctx)
	u.last = capture.Status{DB: db.Path, Targets: []capture.TargetStatus{}}
	for _, r := range db.Replicas {
		u.last.Targets = append(u.last.Targets, capture.TargetStatus{URL: r.Target.String(), Synced: true})
	}
	return u
}

// Status is the database's state: the running Replicator's, or the one
// the last Replicator left.
func (u *unit) Status() capture.Status {
	u.mu.Lock()
	r, st := u.r, u.last
	u.mu.Unlock()
	if r != nil {
		return r.Status()
	}
	return st
}

// State says whether the database is active, idle or failed.
func (u *unit) State() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state
}

// Sync returns once every transaction committed before the call is on
// every target, waking the database if it is idle: a commit may have
// landed that no event has reported yet.
func (u *unit) Sync(ctx context.Context) (uint64, error) {
	for attempt := 1; ; attempt++ {
		r, ended, err := u.awake()
		if err != nil {
			return 0, err
		}
		txid, err := r.Sync(ctx)
		if errors.Is(err, capture.ErrClosed) && attempt < 10 && ctx.Err() == nil && u.ctx.Err() == nil {
			// It went idle between the wake and the request; what was
			// committed before is on every target, but a second look
			// costs little and keeps the answer exact. Once its Run has
			// returned, the next wake opens a new one.
			<-ended
			if u.State() != stateFailed {
				continue
			}
		}
		return txid, err
	}
}

// wake returns the running Replicator, opening and starting one when the
// database is idle.
func (u *unit) wake() (*capture.Replicator, error) {
	r, _, err := u.awake()
	return r, err
}

// awake is wake, with the channel closed once that Replicator's Run has
// returned and the unit has taken what it left.
func (u *unit) awake() (*capture.Replicator, <-chan struct{}, error) {
	u.opening.Lock()
	defer u.opening.Unlock()
	u.mu.Lock()
	r, ended := u.r, u.ended
	u.mu.Unlock()
	if r != nil {
		return r, ended, nil
	}
	if u.ctx.Err() != nil {
		return nil, nil, fmt.Errorf("%s: no longer replicated", u.db.Path)
	}
	if ended != nil {
		// The last Run may still be returning; its Replicator is closed,
		// and the next must not open the spool before it lets go.
		<-ended
	}
	r, err := u.open()
	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil {
		u.state = stateFailed
		u.last.LastError, u.last.LastErrorTime = err.Error(), time.Now()
		return nil, nil, err
	}
	done := make(chan struct{})
	u.r, u.state, u.ended = r, stateActive, done
	u.d.wg.Add(1)
	go func() {
		defer u.d.wg.Done()
		defer close(done)
		u.run(r)
	}()
	return r, done, nil
}

// open opens a Replicator on the database; the caller holds u.opening.
func (u *unit) open() (*capture.Replicator, error) {
	co := u.co
	if !u.checked {
		resnapshot, err := u.d.checkKeys(u.ctx, u.db, co.Targets)
		if err != nil {
			return nil, err
		}
		co.Resnapshot = resnapshot
	}
	r, err := capture.Open(u.ctx, co)
	if err != nil {
		return nil, err
	}
	u.checked = true
	// Continues and Resnapshot are for the first Replicator alone.
	u.co.Continues, u.co.Resnapshot = nil, nil
	return r, nil
}

// run runs r until it returns, and takes what it left.
func (u *unit) run(r *capture.Replicator) {
	err := r.Run(u.ctx)
	u.mu.Lock()
	u.last, u.r = r.Status(), nil
	switch {
	case errors.Is(err, capture.ErrIdle):
		u.idle, u.state = r.Idle(), stateIdle
		u.mu.Unlock()
		if u.lastEvent.Load() >= u.idle.CheckedAt.UnixNano() {
			u.d.fleet.wakeLater(u)
			return
		}
		u.d.fleet.sleep(u)
		return
	case err != nil && u.ctx.Err() == nil:
		u.state = stateFailed
		u.last.LastError, u.last.LastErrorTime = err.Error(), time.Now()
	default:
		u.state = stateIdle
	}
	u.mu.Unlock()
	if err != nil && u.ctx.Err() == nil {
		if u.entry == nil {
			// A database the config names stops the daemon, as it always
			// has: its operator asked for that one.
			u.d.fail(err)
			return
		}
		u.d.o.Log.Error("replicating a database of the directory failed; it is tried again when it is next written",
			"db", u.db.Path, "err", err)
		u.d.fleet.sleep(u)
	}
}

// startIdle makes the unit of a database whose Replicator went idle
// before the daemon last stopped idle at once, without opening it, when
// its saved state says so; it returns false when the database must be
// opened.
func (u *unit) startIdle() bool {
	u.opening.Lock()
	defer u.opening.Unlock()
	idle, st, ok, err := capture.LoadIdle(u.co.SpoolDir, u.db.Path)
	if err != nil || !ok {
		return false
	}
	// A database without keys was checked when it first went up; one
	// with keys is checked at its first open, for a rotated key.
	u.checked = u.db.Replicas[0].Keys == nil
	u.mu.Lock()
	u.idle, u.state, u.last = idle, stateIdle, st
	// Swept and scrubbed as far as maintain is concerned: nothing changed
	// since it went idle, and a restart alone must cost no request.
	u.sweptTXID, u.scrubbedTXID = st.TXID, st.TXID
	u.mu.Unlock()
	return true
}

// wakeDue reports whether an idle database needs its Replicator: its log
// or file changed since it went idle, or a snapshot fell due.
func (u *unit) wakeDue(now time.Time) bool {
	u.mu.Lock()
	idle, state := u.idle, u.state
	u.mu.Unlock()
	if state != stateIdle {
		return false
	}
	if !idle.WakeAt.IsZero() && !now.Before(idle.WakeAt) {
		return true
	}
	fi, err := os.Stat(u.db.Path + "-wal")
	switch {
	case errors.Is(err, os.ErrNotExist):
		return idle.WALSize != 0 || !idle.WALModTime.IsZero()
	case err != nil:
		return true
	}
	return fi.Size() != idle.WALSize || !fi.ModTime().Equal(idle.WALModTime)
}

// halt stops the unit for good and waits for its Replicator, which ships
// what it captured and saves its state.
func (u *unit) halt() {
	u.stop()
	u.mu.Lock()
	ended := u.ended
	u.mu.Unlock()
	if ended != nil {
		<-ended
	}
}
