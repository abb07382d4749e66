package capture

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/wal"
)

// segmentQueue returns the spool queue through which change sets travel,
// in txid order, to the target url. Each target has its own queue, so that
// a target that is down holds up neither the others' uploads nor, once the
// spool is full, their chains: only its own backlog is dropped.
func segmentQueue(url string) string {
	sum := sha256.Sum256([]byte(url))
	return "segments-" + hex.EncodeToString(sum[:6])
}

// ErrClosed is returned by Sync once the Replicator has stopped.
var ErrClosed = errors.New("capture: replicator is closed")

// Replicator captures one database. Open checks everything an operator
// must fix; Run does the work until its context ends.
type Replicator struct {
	o       Options
	walPath string
	urls    []string // target URLs, sorted
	queues  []string // their spool queues, in the same order
	sp      *spool.Spool
	// writer names this replicator in the objects it writes.
	writer writerID

	// dbInfo identifies the database file ferry's connections have open.
	dbInfo   os.FileInfo
	sql      *sqliteConns
	progress *progress

	syncReq chan chan uint64
	// syncing counts the Sync calls under way.
	syncing atomic.Int32
	// logBytes counts the bytes of committed frames the capture read.
	logBytes atomic.Int64
	// repairs carries what a scrub asks of the capture loop.
	repairs chan func()
	done    chan struct{} // closed when Run returns
	runOnce sync.Once
	close   sync.Once

	// Everything below belongs to the goroutine in Run.
	state     *savedState // as loaded; nil for a new replica
	log       *os.File    // the current log file
	gen       *wal.Reader // a reader of the current generation, for ReadPage
	pos       wal.Position
	posValid  bool // false: the log has no header yet after a reset
	protected bool // see the package documentation
	pageSize  int
	dbSize    uint32
	txid      uint64
	txTime    time.Time
	reserved  uint64
	durable   point // end of the last spooled change set
	overlay   map[uint32]wal.PageRef
	page      []byte
	batch     *batch
	budget    budget
	lastCkpt  time.Time
	broken    error // a break not yet answered
	// continuing is set until the first read transaction of a database
	// restored from a target (see Options.Continues).
	continuing bool
	targets    map[string]*target
	job        *snapJob
	waiting    []chan uint64 // Sync callers waiting for the next capture
	// failedSeen holds the spool's failed entries already answered, and
	// lastFailedCheck when they were last looked at.
	failedSeen      map[spool.ID]bool
	lastFailedCheck time.Time
	// lastCommit is when the capture last read a commit from the log;
	// quiet is the mark of the database file
	// taken on going idle, set from then until the first pass after the
	// next start has used it; idle is what Idle returns.
	lastCommit time.Time
	quiet      *quietMark
	idle       Idle
	saveIdle   *Idle
}

// point is a txid with what the capture needs to go on from it.
type point struct {
	txid     uint64
	at       time.Time
	pos      wal.Position
	posValid bool
	pageSize int
	dbSize   uint32
}

// target is the capture loop's handle on one replica target: the
// target's state (where it is, what it lacks, how it fares), which the
// loop reads freely and changes only through progress, and what the loop
// alone needs to snapshot it.
type target struct {
	*targetState
	store objstore.Store
	// prev is the manifest of the snapshot at base, when loaded.
	prev *snapshot.Manifest
	// dirty holds the chunks written since base; full means they are not
	// known and the next snapshot rereads everything.
	dirty snapshot.ChunkSet
	full  bool
	// forced asks for a snapshot whatever the interval says; jobForced
	// says the snapshot in flight was one, to ask again if it fails.
	forced, jobForced bool
	// While a snapshot is in flight for the target, jobDirty and jobFull
	// are the dirty chunks it was handed; resyncing says that it is the
	// snapshot that lets change sets reach the target again.
	snapping  bool
	resyncing bool
	jobDirty  snapshot.ChunkSet
	jobFull   bool
	failures  int
	nextTry   time.Time
	// breakAfter, when not zero, is where the target's chain of change
	// sets ended at a break, for the marker the next snapshot spools;
	// marked is the txid of the marker spooled last, which a dropped
	// backlog may have taken with it.
	breakAfter uint64
	marked     uint64
	// stopHandled says that the capture answered the target's stop.
	stopHandled bool
}

// Open checks the database and the spool and returns a Replicator ready to
// Run. It fails with one clear error, naming the path, when the database is
// missing, is not SQLite, is not in WAL mode, or when another process holds
// the spool. Open writes nothing to the database.
func Open(ctx context.Context, o Options) (*Replicator, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.DBPath, err = filepath.Abs(o.DBPath); err != nil {
		return nil, fmt.Errorf("capture %s: %w", o.DBPath, err)
	}
	// Every line the replicator logs is about this database.
	o.Log = o.Log.With("db", o.DBPath)
	info, err := statDB(o.DBPath)
	if err != nil {
		return nil, err
	}
	r := &Replicator{
		o:       o,
		walPath: o.DBPath + "-wal",
		urls:    slices.Sorted(maps.Keys(o.Targets)),
		dbInfo:  info,
		syncReq: make(chan chan uint64),
		repairs: make(chan func(), 16),
		done:    make(chan struct{}),
		overlay: map[uint32]wal.PageRef{},
		targets: map[string]*target{},
		budget:  budget{interval: o.SyncInterval},

		failedSeen: map[spool.ID]bool{},
	}
	fail := func(err error) (*Replicator, error) {
		r.closeAll()
		return nil, err
	}
	for _, u := range r.urls {
		r.queues = append(r.queues, segmentQueue(u))
	}
	r.sp, err = spool.Open(o.SpoolDir, spool.Options{MaxBytes: o.MaxSpoolBytes, Ordered: r.queues, Backoff: o.SpoolBackoff})
	if err != nil {
		return fail(fmt.Errorf("capture %s: %w", o.DBPath, err))
	}
	if r.state, err = loadState(o.SpoolDir, o.DBPath); err != nil {
		return fail(fmt.Errorf("capture %s: %w", o.DBPath, err))
	}
	saved := ""
	if r.state != nil {
		saved = r.state.Writer
	}
	if r.writer, err = newWriterID(saved); err != nil {
		return fail(fmt.Errorf("capture %s: %w", o.DBPath, err))
	}
	if r.sql, err = openConns(ctx, o.DBPath, o.CheckpointBusyTimeout, o.AloneInProcess); err != nil {
		return fail(fmt.Errorf("capture %s: %w", o.DBPath, err))
	}
	batchBytes := o.batchBytes
	if batchBytes == 0 && o.MaxSpoolBytes > 0 {
		// A change set must fit in the spool with room to spare, or
		// every one would overflow it.
		batchBytes = min(defaultBatchBytes, o.MaxSpoolBytes/4)
	}
	if r.batch, err = openBatch(o.SpoolDir, batchBytes, batchMemory); err != nil {
		return fail(fmt.Errorf("capture %s: %w", o.DBPath, err))
	}
	r.progress = newProgress(r.urls, o.Log)
	return r, nil
}

// Close releases the database, its connections and the spool. Run calls
// it when it returns; call it directly only for a Replicator never run.
func (r *Replicator) Close() error {
	var err error
	r.close.Do(func() { err = r.closeAll() })
	return err
}

func (r *Replicator) closeAll() error {
	var errs []error
	if r.sql != nil {
		errs = append(errs, r.sql.close())
	}
	if r.log != nil {
		errs = append(errs, r.log.Close())
	}
	if r.batch != nil {
		errs = append(errs, r.batch.close())
	}
	if r.sp != nil {
		errs = append(errs, r.sp.Close())
	}
	return errors.Join(errs...)
}

// Sync returns once every transaction committed before the call can be
// restored from every target, with the txid of the newest of them. It
// fails when ctx ends first or the Replicator stops.
func (r *Replicator) Sync(ctx context.Context) (uint64, error) {
	// A Replicator about to go idle stays for a caller on its way.
	r.syncing.Add(1)
	defer r.syncing.Add(-1)
	reply := make(chan uint64, 1)
	select {
	case r.syncReq <- reply:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-r.done:
		return 0, ErrClosed
	}
	var txid uint64
	select {
	case txid = <-reply:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-r.done:
		return 0, ErrClosed
	}
	return txid, r.progress.wait(ctx, txid, r.done)
}
