package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/follow"
	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/lease"
	"github.com/ferrydb/ferry/internal/objstore"
)

// standby follows the replica until the primary's lease lapses, takes the
// lease, applies the last change sets and replicates the database on as
// the same history, with execCmd as its application when set.
type standby struct {
	*app
	store    objstore.Store
	replica  config.Replica
	path     string
	interval time.Duration
	ttl      time.Duration
	execCmd  string
	// addr is -addr: the follower serves it until the promotion, the
	// daemon after, once stopServing has closed the follower's server.
	addr        string
	stopServing func()
}

func (s *standby) run(ctx context.Context, f *follow.Follower, finish chan struct{}) error {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	followed := make(chan error, 1)
	go func() { followed <- f.Run(fctx) }()

	l, err := s.awaitLease(ctx, followed)
	if l == nil {
		cancel()
		if err == nil {
			err = <-followed
		}
		return err
	}
	// The lease is ours from here: keep it while the last change sets are
	// applied, and give it up if anything stops the promotion.
	keepCtx, stopKeep := context.WithCancel(ctx)
	kept := make(chan error, 1)
	go func() { kept <- l.Keep(keepCtx, true) }()
	abort := func(err error) error {
		stopKeep()
		<-kept
		rctx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer done()
		l.Release(rctx)
		return err
	}
	close(finish)
	if err := <-followed; err != nil {
		return abort(fmt.Errorf("promote %s: %w", s.path, err))
	}
	if ctx.Err() != nil {
		return abort(nil)
	}
	st := f.Status()
	snap, err := newestSnapshot(ctx, s.store, st.TXID)
	if err != nil {
		return abort(fmt.Errorf("promote %s: %w", s.path, err))
	}
	if err := setAsideSpool(s.path, s.log); err != nil {
		return abort(err)
	}
	stopKeep()
	if err := <-kept; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("promote %s: the lease was lost while the last change sets were applied: %w", s.path, err)
	}
	url := s.replica.Target.String()
	s.log.Info("promoted: replicating the database as the primary", "db", s.path, "replica", url, "txid", st.TXID, "snapshot", snap)

	s.stopServing()
	cfg := &config.Config{Source: "the command line", Addr: s.addr,
		HealthzMaxLag: config.DefaultHealthzMaxLag, ShutdownTimeout: config.DefaultShutdownTimeout,
		DBs: []config.DB{{
			Path: s.path, Replicas: []config.Replica{s.replica},
			SyncInterval: config.DefaultSyncInterval, SnapshotInterval: config.DefaultSnapshotInterval,
			MaxSpoolBytes: config.DefaultMaxSpoolBytes,
			Retention:     config.DefaultRetention, GCInterval: config.DefaultGCInterval,
			ScrubInterval: config.DefaultScrubInterval,
			Lease:         s.ttl,
		}}}
	ready := make(chan struct{})
	opts := daemon.Options{
		FilesSpool: filesSpool(os.TempDir()), Log: s.log,
		Capture: capture.Options{AloneInProcess: true},
		Ready:   func(string) { close(ready) },
		Takeover: &daemon.Takeover{DB: s.path, Lease: l,
			Continues: &capture.Continuation{URL: url, TXID: st.TXID, Time: st.AppliedTime, Snapshot: snap}},
	}
	if s.execCmd == "" {
		return daemon.Run(ctx, cfg, opts)
	}
	code, err := daemon.Child{Command: s.execCmd, Ready: ready}.Run(ctx, func(ctx context.Context) error { return daemon.Run(ctx, cfg, opts) })
	if err != nil {
		return err
	}
	return &childExit{code: code}
}

// awaitLease watches the replica's lease every interval and takes it once
// it has lapsed. It returns nil, and the follower's end or ctx's, when the
// follower stops first. A replica whose primary holds no lease is never
// taken over: without a lease nothing says the primary is gone.
func (s *standby) awaitLease(ctx context.Context, followed <-chan error) (*lease.Lease, error) {
	noLease, failing := false, false
	for {
		rec, err := lease.Read(ctx, s.store, layout.ReplicatorLeaseKey)
		switch {
		case objstore.IsNotFound(err):
			if !noLease {
				s.log.Warn("the replica has no lease, so nothing tells when its primary is gone; following until it takes one (replicate -lease)", "replica", s.replica.Target.String())
			}
			noLease, failing = true, false
		case err != nil:
			if !failing {
				s.log.Warn("cannot read the primary's lease; trying again", "err", err)
			}
			failing = true
		case rec.Free(time.Now()):
			l, err := lease.Acquire(ctx, s.store, layout.ReplicatorLeaseKey, daemon.LeaseHolder(), s.ttl)
			var held *lease.HeldError
			switch {
			case err == nil:
				s.log.Info("took the lease the primary let lapse", "previous_holder", rec.Holder, "expired", rec.Expires.UTC().Format(time.RFC3339Nano))
				return l, nil
			case errors.As(err, &held):
				s.log.Info("another process took the lease first; following on", "holder", held.Holder)
			default:
				s.log.Warn("cannot take the lease; trying again", "err", err)
			}
		default:
			noLease, failing = false, false
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case err := <-followed:
			if err == nil {
				err = errors.New("the follower stopped")
			}
			return nil, err
		case <-time.After(s.interval):
		}
	}
}

// newestSnapshot returns the newest snapshot at or before txid, the one
// the replicator taking over counts its history from (0 if none).
func newestSnapshot(ctx context.Context, store objstore.Store, txid uint64) (uint64, error) {
	l, err := layout.Read(ctx, store, layout.Snapshots, nil)
	if err != nil {
		return 0, err
	}
	var snap uint64
	for _, s := range l.Snapshots {
		if s.TXID <= txid {
			snap = s.TXID
		}
	}
	return snap, nil
}

// setAsideSpool moves a spool left beside the database by an earlier life
// of this host as a primary out of the way: what it holds belongs to a
// history the replica has moved past, and its saved state would make the
// replicator resume that history instead of the replica's.
func setAsideSpool(dbPath string, log interface {
	Warn(msg string, args ...any)
}) error {
	dir := daemon.SpoolDir("", dbPath)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	aside := fmt.Sprintf("%s.stale-%d", dir, time.Now().Unix())
	if err := os.Rename(dir, aside); err != nil {
		return fmt.Errorf("set aside the old spool %s: %w", dir, err)
	}
	log.Warn("set aside a spool from an earlier run as the primary; the replica's history goes on without it", "spool", aside)
	return nil
}
