// Package ferry is the library behind the ferry command: it replicates a
// SQLite database to object storage, waits for what was committed to be
// durable there, and restores a database to its latest state or to any
// single transaction. Programs that embed ferry use this package; the
// parts it is built from live under internal/.
//
// Replica URLs are those of the command line: file:///abs/path, or
// s3://bucket/prefix?endpoint=URL&region=R&force-path-style=true with
// credentials from the standard AWS chain.
package ferry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
)

// Status is where replication of a database stands: the newest txid
// captured and, per replica, the newest txid a restore returns.
type Status = capture.Status

// Options tune a Replicator. The zero value replicates with the defaults
// of the command line, and a zero field takes that field's default.
type Options struct {
	// SpoolDir holds the change sets waiting for upload and ferry's state;
	// empty means .<db name>-ferry beside the database.
	SpoolDir string
	// SyncInterval is the most often a change set ships under steady
	// load (default 1s); SnapshotInterval how often a changed database
	// gets a new snapshot (default 1h).
	SyncInterval, SnapshotInterval time.Duration
	// MaxSpoolBytes bounds the spool (default 1 GiB). Past it, the
	// backlog of change sets is dropped and a snapshot re-establishes
	// the replica once its store answers again; Status reports the gap.
	MaxSpoolBytes int64
	Log           *slog.Logger
}

// withDefaults fills in what o leaves zero from the defaults the command
// line's config uses, so that an embedding program and `ferry replicate`
// treat a database alike; an unbounded spool in particular would let a
// long outage of the store fill the application's disk.
func (o Options) withDefaults(dbPath string) (Options, error) {
	if o.SyncInterval < 0 || o.SnapshotInterval < 0 || o.MaxSpoolBytes < 0 {
		return o, fmt.Errorf("ferry: negative option (SyncInterval %v, SnapshotInterval %v, MaxSpoolBytes %d); leave an option zero for its default", o.SyncInterval, o.SnapshotInterval, o.MaxSpoolBytes)
	}
	if o.SpoolDir == "" {
		o.SpoolDir = daemon.SpoolDir("", dbPath)
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = config.DefaultSyncInterval
	}
	if o.SnapshotInterval == 0 {
		o.SnapshotInterval = config.DefaultSnapshotInterval
	}
	if o.MaxSpoolBytes == 0 {
		o.MaxSpoolBytes = config.DefaultMaxSpoolBytes
	}
	return o, nil
}

// Replicator replicates one database in the background until Close.
type Replicator struct {
	r      *capture.Replicator
	o      Options
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// Replicate starts replicating the SQLite database at dbPath, which must be
// in WAL mode, to every replica URL. It returns once replication runs;
// problems an operator must fix (a missing database, a missing bucket,
// refused credentials) are returned here.
func Replicate(ctx context.Context, dbPath string, replicaURLs []string, o Options) (*Replicator, error) {
	if len(replicaURLs) == 0 {
		return nil, errors.New("ferry: no replica URL")
	}
	dbPath, err := filepath.Abs(dbPath)
	if err != nil {
		return nil, err
	}
	if o, err = o.withDefaults(dbPath); err != nil {
		return nil, err
	}
	targets := make(map[string]objstore.Store, len(replicaURLs))
	for _, u := range replicaURLs {
		s, err := target.OpenURL(ctx, u, target.Options{Check: true})
		if err != nil {
			return nil, err
		}
		targets[u] = s
	}
	_, statErr := os.Lstat(o.SpoolDir)
	fresh := errors.Is(statErr, os.ErrNotExist)
	r, err := capture.Open(ctx, capture.Options{
		DBPath: dbPath, SpoolDir: o.SpoolDir, Targets: targets,
		SyncInterval: o.SyncInterval, SnapshotInterval: o.SnapshotInterval,
		MaxSpoolBytes: o.MaxSpoolBytes, Log: o.Log,
	})
	if err != nil {
		if fresh {
			spool.RemoveUnused(o.SpoolDir)
		}
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rep := &Replicator{r: r, o: o, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rep.done)
		err := r.Run(runCtx)
		rep.mu.Lock()
		rep.err = err
		rep.mu.Unlock()
	}()
	return rep, nil
}

// Sync returns once every transaction committed before the call is durable
// in every replica, with the txid of the newest of them.
func (r *Replicator) Sync(ctx context.Context) (uint64, error) { return r.r.Sync(ctx) }

// Status reports where replication stands.
func (r *Replicator) Status() Status { return r.r.Status() }

// Options returns the options r runs with, every default filled in.
func (r *Replicator) Options() Options { return r.o }

// Close stops replication. What was captured but not yet uploaded stays in
// the spool and goes out when replication next runs.
func (r *Replicator) Close() error {
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	if errors.Is(r.err, context.Canceled) {
		return nil
	}
	return r.err
}

// RestoreOptions choose what a restore returns.
type RestoreOptions struct {
	// TXID restores the state right after that transaction; zero means the
	// latest. Before, when set instead, restores the last transaction
	// committed at or before it.
	TXID   uint64
	Before time.Time
	// Parallelism is how many objects are fetched at once (default 8).
	Parallelism int
}

// RestoreResult describes a restored database.
type RestoreResult = restore.Result

// Restore writes the database that replicaURL holds into output, which
// must not exist. The result is checked with PRAGMA integrity_check before
// it is renamed into place.
func Restore(ctx context.Context, replicaURL, output string, o RestoreOptions) (RestoreResult, error) {
	store, err := target.OpenURL(ctx, replicaURL, target.Options{Check: true, MustExist: true})
	if err != nil {
		return RestoreResult{}, err
	}
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		return RestoreResult{}, err
	}
	var plan restore.Plan
	if o.Before.IsZero() {
		plan, err = cat.PlanTXID(o.TXID)
	} else {
		plan, err = cat.PlanTime(o.Before)
	}
	if err != nil {
		return RestoreResult{}, err
	}
	return restore.ToFile(ctx, store, plan, output, restore.Options{Parallelism: o.Parallelism, Before: o.Before})
}
