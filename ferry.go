// Package ferry is the library behind the ferry command: it replicates a
// SQLite database to object storage, waits for what was committed to be
// durable there, and restores a database to its latest state or to any
// single transaction. Programs that embed ferry use this package; the
// parts it is built from live under internal/.
//
// Replica URLs are those of the command line: file:///abs/path, or
// s3://bucket/prefix?endpoint=URL&region=R&force-path-style=true with
// credentials from the standard AWS chain.
//
// ferry reads databases through modernc.org/sqlite. A program that also
// opens them with that driver, and calls sqlite.OFDLocking(true) before
// it opens any database, lets ferry read a snapshot's pages from the
// database file, several times faster than through SQLite, as the ferry
// command does. Without it, ferry never opens a database file itself:
// under the POSIX locks SQLite takes by default, closing any descriptor of
// a file drops every lock the process holds on it, its connections'
// included.
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
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
)

// Status is where replication of a database stands: the newest txid
// captured and, per replica, the newest txid a restore returns; with
// Options.Lease, the lease held on each replica.
type Status struct {
	capture.Status
	Leases []LeaseStatus `json:"leases,omitempty"`
}

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
	// KeyFile, when set, encrypts everything stored in the replicas with
	// the key in that file (made by 'ferry keygen'); ReadOnlyKeyFiles are
	// older keys whose history stays readable after a rotation.
	KeyFile          string
	ReadOnlyKeyFiles []string
	// Lease, when set, holds a lease of this TTL on every replica (at
	// least 3s), renewed in the background: a second writer is refused,
	// and a lease found taken over stops replication (Close returns why).
	// A standby ('ferry follow -standby') takes over once it lapses.
	Lease time.Duration
	Log   *slog.Logger
}

// withDefaults fills in what o leaves zero from the defaults the command
// line's config uses, so that an embedding program and `ferry replicate`
// treat a database alike; an unbounded spool in particular would let a
// long outage of the store fill the application's disk.
func (o Options) withDefaults(dbPath string) (Options, error) {
	if o.Lease != 0 && o.Lease < config.MinLease {
		return o, fmt.Errorf("ferry: Lease %s is shorter than %s; a lease must outlast a slow request and the skew between clocks", o.Lease, config.MinLease)
	}
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
	leases *leases
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// Replicate starts replicating the SQLite database at dbPath, which must be
// in WAL mode, to every replica URL. It returns once replication runs;
// problems an operator must fix (a missing database, a missing bucket,
// refused credentials) are returned here.
//
// While the application commits, the replicator holds SQLite's checkpoint
// lock, so that the application's automatic checkpoints give up at once;
// it checkpoints instead. For that it keeps one descriptor of the
// database's -shm file open for the life of the process (until the file
// is removed): closing it would drop every POSIX lock the process holds on
// the file, those of the program's own connections too.
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
	if o.KeyFile == "" && len(o.ReadOnlyKeyFiles) > 0 {
		return nil, errors.New("ferry: ReadOnlyKeyFiles without a KeyFile to write with")
	}
	ring, err := loadRing(o.KeyFile, o.ReadOnlyKeyFiles)
	if err != nil {
		return nil, err
	}
	targets := make(map[string]objstore.Store, len(replicaURLs))
	var resnapshot []string
	for _, u := range replicaURLs {
		s, err := openURL(ctx, u, ring, target.Options{Check: true})
		if err != nil {
			return nil, err
		}
		rotated, err := seal.CheckReplica(ctx, s, ring)
		if errors.Is(err, objstore.ErrKey) {
			return nil, fmt.Errorf("replica %s: %w", u, err)
		}
		if rotated {
			resnapshot = append(resnapshot, u)
		}
		targets[u] = s
	}
	ls, err := takeLeases(ctx, targets, o.Lease)
	if err != nil {
		return nil, err
	}
	_, statErr := os.Lstat(o.SpoolDir)
	fresh := errors.Is(statErr, os.ErrNotExist)
	r, err := capture.Open(ctx, capture.Options{
		DBPath: dbPath, SpoolDir: o.SpoolDir, Targets: targets,
		SyncInterval: o.SyncInterval, SnapshotInterval: o.SnapshotInterval,
		MaxSpoolBytes: o.MaxSpoolBytes, Log: o.Log,
		Addresser: ring.Addresser(), Resnapshot: resnapshot,
	})
	if err != nil {
		ls.release()
		if fresh {
			spool.RemoveUnused(o.SpoolDir)
		}
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rep := &Replicator{r: r, o: o, leases: ls, cancel: cancel, done: make(chan struct{})}
	lost := ls.keep(runCtx, cancel)
	go func() {
		defer close(rep.done)
		err := r.Run(runCtx)
		if l := lost(); l != nil {
			err = l // the lease lost is why replication stopped
		}
		ls.release()
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
func (r *Replicator) Status() Status {
	return Status{Status: r.r.Status(), Leases: r.leases.status()}
}

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
	// KeyFiles are the keys of an encrypted replica: every key its
	// history was written with, for a restore that crosses a rotation.
	KeyFiles []string
}

// RestoreResult describes a restored database.
type RestoreResult = restore.Result

// Restore writes the database that replicaURL holds into output, which
// must not exist. The result is checked with PRAGMA integrity_check before
// it is renamed into place.
func Restore(ctx context.Context, replicaURL, output string, o RestoreOptions) (RestoreResult, error) {
	var ring *seal.Ring
	if len(o.KeyFiles) > 0 {
		var err error
		if ring, err = loadRing("", o.KeyFiles); err != nil {
			return RestoreResult{}, err
		}
	}
	store, err := openURL(ctx, replicaURL, ring, target.Options{Check: true, MustExist: true})
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
	return restore.ToFile(ctx, store, plan, output, restore.Options{Parallelism: o.Parallelism, Before: o.Before, Keys: ring.Keys()})
}

// loadRing loads the keys of an encrypted replica: write may be "" for
// one that is only read. No files at all means no encryption.
func loadRing(write string, readOnly []string) (*seal.Ring, error) {
	if write == "" && len(readOnly) == 0 {
		return nil, nil
	}
	var w *seal.Key
	if write != "" {
		k, err := seal.LoadKeyFile(write)
		if err != nil {
			return nil, err
		}
		w = k
	}
	var ro []*seal.Key
	for _, p := range readOnly {
		k, err := seal.LoadKeyFile(p)
		if err != nil {
			return nil, err
		}
		ro = append(ro, k)
	}
	return seal.NewRing(w, ro...)
}

// openURL opens a replica URL with keys (nil for none).
func openURL(ctx context.Context, rawURL string, ring *seal.Ring, o target.Options) (objstore.Store, error) {
	t, err := config.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return target.Open(ctx, config.Replica{Target: t, Keys: ring}, o)
}
