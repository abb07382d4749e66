package capture

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/spool"
)

// Options configure a Replicator.
type Options struct {
	// DBPath is the database to replicate. It must exist and be in WAL
	// mode.
	DBPath string
	// SpoolDir holds the spool of change sets and the capture state. One
	// process at a time may use it.
	SpoolDir string
	// Targets maps each replica URL to its store. Change sets go to every
	// target through the spool; snapshots go to each store directly.
	Targets map[string]objstore.Store

	// SyncInterval is the upload budget of change sets under steady load:
	// one per interval on a fixed cadence, so that an hour of steady
	// writes at 1s costs at most 3,601 uploads, what a ticker would make.
	// The first commit after a quiet period ships at once (with the rest
	// of its burst, when recent commits came in bursts), and a commit
	// after a partial interval waits only for the next upload the budget
	// allows (see budget.go); a Sync ships at once. Zero means 1s.
	SyncInterval time.Duration
	// SnapshotInterval is how often a changed database gets a new
	// snapshot. Zero means 1h.
	SnapshotInterval time.Duration
	// MaxSpoolBytes bounds the spool. Past it, the change-set backlog of
	// the target furthest behind is dropped, and a snapshot re-establishes
	// its chain once its store answers; the lost txids are reported as a
	// gap. Zero means no bound.
	MaxSpoolBytes int64

	// CheckpointPages is the log length, in frames, from which ferry runs
	// PASSIVE checkpoints itself. Zero means 1000, SQLite's own default.
	CheckpointPages int
	// TruncatePages is the log length, in frames, from which ferry copies
	// the log down to a short tail and then takes SQLite's writer lock,
	// waiting a few milliseconds for it at most, to copy the tail and let
	// the log restart (from six times as long, through a RESTART
	// checkpoint when BEGIN IMMEDIATE keeps losing the lock). Zero means CheckpointPages: the log then restarts
	// at about the length it would without ferry. A longer log costs the
	// application on every commit: past its wal_autocheckpoint (1000
	// frames unless it changed it) SQLite tries a checkpoint after each
	// commit, a few fcntl locks that ferry's read mark makes find nothing
	// to copy.
	TruncatePages int
	// CheckpointBusyTimeout bounds how long a checkpoint that takes the
	// writer lock waits for readers and writers, and so how long it can
	// hold the application's writers up. Zero means 30ms.
	CheckpointBusyTimeout time.Duration
	// PollInterval is how often the log is checked when no file event
	// arrives. Zero means 50ms.
	PollInterval time.Duration

	// AloneInProcess reports that nothing in this process opens the
	// database but ferry (the ferry command sets it). Ferry then closes the
	// descriptor of the -shm file it opens for its checkpoint hold when it
	// lets go of the database. Left false, as a program that embeds ferry
	// beside connections of its own must leave it, ferry keeps that
	// descriptor open until the file is removed: closing it would drop
	// every POSIX lock the process holds on the file, those of the
	// program's connections too.
	AloneInProcess bool

	// IdleAfter, when not zero, lets a database that has been quiet this
	// long, with every transaction on every target, go idle: Run saves
	// the state, lets go of the database and returns ErrIdle, and a
	// Replicator opened again later carries on without a snapshot when
	// the log allows (see quietMark). Zero keeps the database held for
	// as long as Run runs.
	IdleAfter time.Duration

	// Events, when set, receives a value soon after the log is written,
	// from a watcher the caller runs for many databases; nil makes the
	// Replicator watch the log itself. Either way it is a hint, and the
	// log is also polled.
	Events <-chan struct{}

	// Continues, when set, says that the database was just restored from
	// one of the targets and has not changed since: a replicator with no
	// saved state carries that target's history on, rather than starting
	// a new one with a snapshot.
	Continues *Continuation

	// Addresser names the chunks of new snapshots; nil means SHA-256. An
	// encrypted database's keyring gives a keyed one.
	Addresser snapshot.Addresser
	// Resnapshot lists targets that need a snapshot at once, whatever the
	// interval: the ones whose newest snapshot was named with a key the
	// database no longer writes with.
	Resnapshot []string

	// SpoolBackoff spaces upload retries; zero means the spool's default.
	SpoolBackoff spool.Backoff
	// Log receives what an operator may want to know; nil discards it.
	Log *slog.Logger

	// batchBytes overrides the size at which a batch is shipped at once;
	// tests make it small.
	batchBytes int64
	// quietMargin overrides quietMargin, for tests on a file system
	// whose clock ticks in nanoseconds.
	quietMargin time.Duration
	// failedCheck overrides failedCheckEvery, for tests of a change set
	// the store refuses.
	failedCheck time.Duration
}

// Continuation is where a database restored from a target stands in that
// target's history.
type Continuation struct {
	// URL is the target it was restored from.
	URL string
	// TXID is the transaction the restored database ends at, Time when it
	// was committed, and Snapshot the snapshot the restore started from.
	TXID     uint64
	Time     time.Time
	Snapshot uint64
}

func (o Options) withDefaults() (Options, error) {
	if o.Addresser == nil {
		o.Addresser = snapshot.SHA256{}
	}
	if o.DBPath == "" {
		return o, errors.New("capture: no database path")
	}
	if o.SpoolDir == "" {
		return o, fmt.Errorf("capture %s: no spool directory", o.DBPath)
	}
	if len(o.Targets) == 0 {
		return o, fmt.Errorf("capture %s: no replica target", o.DBPath)
	}
	if c := o.Continues; c != nil {
		if _, ok := o.Targets[c.URL]; !ok || c.TXID == 0 || c.Snapshot == 0 || c.Snapshot > c.TXID {
			return o, fmt.Errorf("capture %s: cannot continue %+v: not a target's history", o.DBPath, *c)
		}
	}
	for url, s := range o.Targets {
		if s == nil {
			return o, fmt.Errorf("capture %s: target %s has no store", o.DBPath, url)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.SyncInterval, time.Second)
	def(&o.SnapshotInterval, time.Hour)
	def(&o.CheckpointBusyTimeout, 30*time.Millisecond)
	def(&o.PollInterval, 50*time.Millisecond)
	if o.CheckpointPages <= 0 {
		o.CheckpointPages = 1000
	}
	if o.TruncatePages <= 0 {
		o.TruncatePages = o.CheckpointPages
	}
	if o.TruncatePages < o.CheckpointPages {
		o.TruncatePages = o.CheckpointPages
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}
