package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ferrydb/ferry/internal/wal"
)

// answerBreak answers a log that no longer continues from what ferry
// captured. What ferry could not see is folded into one new txid, the
// database as it is now, which only a snapshot carries; a change set never
// guesses it. The steps:
//
//  1. Ship the transactions captured before the break: they are real.
//  2. Under a fresh read transaction, read the current log generation from
//     its header to its end, noting the latest frame of every page. The
//     database file with those frames laid over it is the database now.
//  3. Give that state the txid after every txid that may exist anywhere
//     (Reserved), save it, and snapshot it for every target, rereading
//     every chunk: which pages changed unseen is not known.
func (r *Replicator) answerBreak(ctx context.Context, cause error) error {
	r.broken = cause
	r.stopSnapshots()
	if !r.batch.empty() {
		r.shipBatch()
	}
	// Where the chains of the targets that change sets reach now end:
	// after the last change set spooled, whether or not the batch was.
	end := r.durable.txid
	if !r.batch.empty() {
		r.dropBatch("the change set before a break could not be spooled")
	}
	if err := r.sql.handover(ctx, r.rescan); err != nil {
		return fmt.Errorf("read the log after a break: %w", err)
	}
	r.protected = true
	r.txid = max(r.txid, r.reserved) + 1
	r.txTime = time.Now()
	r.durable = r.current()
	for _, u := range r.urls {
		t := r.targets[u]
		wasSynced := t.synced
		if t.base > 0 {
			// The new txid is no single commit: the ones ferry could not
			// read are in it, and no restore can stop between them.
			r.gap(t.url, r.txid, r.txid, fmt.Sprintf("the log broke continuity (%v); txid %d folds in the commits ferry could not read", cause, r.txid))
		}
		r.unsync(t, r.txid, "the log broke continuity: "+cause.Error())
		if wasSynced {
			r.chainEnds(t, end)
		}
		t.full, t.prev = true, nil
		clear(t.dirty)
	}
	r.progress.setLocal(r.txid, r.txTime)
	r.broken = nil
	if err := r.reserve(r.txid); err != nil {
		// Nothing carries the new txid before it is reserved: the
		// snapshot tries to reserve it again first.
		r.fail(err)
	}
	r.startSnapshots(ctx, time.Now())
	return nil
}

// rescan reads the current log generation from its header to the end of
// what is committed, as the start of a new chain. tx is the read
// transaction begun just before, which shows the database when the log
// holds nothing.
func (r *Replicator) rescan(tx *sql.Tx) error {
	if r.log != nil {
		r.log.Close()
		r.log = nil
	}
	r.posValid = false
	f, _, err := r.openLog()
	if err != nil {
		return err
	}
	clear(r.overlay)
	r.gen = nil
	var hdr wal.Header
	if f != nil {
		hdr, err = wal.ReadHeader(f)
	}
	if f == nil || errors.Is(err, wal.ErrNoHeader) || errors.Is(err, wal.ErrBadHeader) {
		// No log to speak of: the database file is the database.
		return r.sizeFrom(tx)
	}
	if err != nil {
		return fmt.Errorf("read log header: %w", err)
	}
	rd := wal.NewReader(f, hdr)
	r.pageSize, r.pos, r.posValid = hdr.PageSize, hdr.Start(), true
	dbSize := uint32(0)
	for {
		txn, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		r.lay(txn, dbSize)
		dbSize, r.pos = txn.Commit, txn.End
	}
	r.gen = rd
	if dbSize == 0 {
		return r.sizeFrom(tx)
	}
	r.dbSize = dbSize
	return nil
}

// sizeFrom takes the page size and the database size from what the read
// transaction tx shows.
func (r *Replicator) sizeFrom(tx *sql.Tx) error {
	var ps, pages int64
	err := tx.QueryRow("PRAGMA page_size").Scan(&ps)
	if err == nil {
		err = tx.QueryRow("PRAGMA page_count").Scan(&pages)
	}
	if err != nil {
		return fmt.Errorf("read the database size: %w", err)
	}
	r.pageSize, r.dbSize = int(ps), uint32(pages)
	return nil
}

// resume continues from the saved position after a restart: it checks
// that the log still continues from there and rebuilds the overlay from
// the generation's header up to it. Nothing before the restart protected
// the log, so a new generation is a break here.
func (r *Replicator) resume(*sql.Tx) error {
	// Taken once the read transaction is held: from then on the log is
	// protected, and the mark vouches for what happened before.
	quiet := r.quiet != nil && r.quiet.holds(r.o.DBPath)
	r.quiet = nil
	if quiet {
		// As if ferry had held a read transaction all along.
		r.protected = true
	}
	if !r.posValid {
		if !quiet {
			return broke("no log position was saved to resume from")
		}
		return r.capturePass(context.Background())
	}
	f, _, err := r.openLog()
	if err != nil {
		return err
	}
	if f == nil {
		if quiet {
			r.newGeneration(nil)
			return nil
		}
		return broke("the log file %s is gone", r.walPath)
	}
	if _, err := wal.Resume(f, r.pos); err != nil {
		var be *wal.BreakError
		if !errors.As(err, &be) {
			return err
		}
		if !quiet || !newGeneration(be) {
			return &breakError{err}
		}
		// The log started again while the database was idle, after
		// nothing more than ferry had read (see quietMark).
		r.o.Log.Debug("the log started a new generation while the database was idle", "how", be.Reason)
		if be.Reason == wal.BreakTruncated {
			r.newGeneration(nil)
			return nil
		}
		r.newGeneration(&be.Header)
		return r.capturePass(context.Background())
	}
	hdr, err := wal.ReadHeader(f)
	if err != nil {
		return broke("read log header: %v", err)
	}
	rd := wal.NewReader(f, hdr)
	clear(r.overlay)
	var size uint32
	for rd.Position().Offset < r.pos.Offset {
		txn, err := rd.Next()
		if err != nil {
			return broke("the log no longer reaches the saved position: %v", err)
		}
		r.lay(txn, size)
		size = txn.Commit
	}
	if rd.Position() != r.pos {
		return broke("the saved position %v is not a commit of the log", r.pos)
	}
	r.gen = rd
	return r.capturePass(context.Background())
}

// lay lays txn's pages over the image, after a transaction that left the
// database size pages long.
func (r *Replicator) lay(txn wal.Txn, size uint32) {
	for _, ref := range txn.Pages {
		r.overlay[ref.Pgno] = ref
	}
	if txn.Commit < size {
		// Pages past the end are no longer part of the database: SQLite
		// zero-fills a page it grows into and writes it, never reads it.
		for pgno := range r.overlay {
			if pgno > txn.Commit {
				delete(r.overlay, pgno)
			}
		}
	}
}

// unsync leaves t out of change sets until a snapshot starts for it,
// noting the first txid it misses: the start of a gap that Status shows
// as open until the snapshot that ends it is stored.
func (r *Replicator) unsync(t *target, from uint64, cause string) {
	r.progress.unsync(t.url, from, cause)
}

// current returns where the capture is.
func (r *Replicator) current() point {
	return point{txid: r.txid, at: r.txTime, pos: r.pos, posValid: r.posValid, pageSize: r.pageSize, dbSize: r.dbSize}
}

// continueHistory sets a replicator with no saved state up to carry on the
// history of the target the database was restored from: the database is
// the state after c.TXID, which that target restores from snapshot
// c.Snapshot on. The first read transaction checks that the log is still
// empty (see takeRestored); the other targets start with a snapshot, as
// new ones do.
func (r *Replicator) continueHistory(c *Continuation) {
	r.txid, r.txTime = c.TXID, c.Time
	r.reserved = max(r.reserved, c.TXID)
	r.continuing = true
	r.progress.restore(c.URL, &savedTarget{Snapshot: c.Snapshot, SnapshotTime: time.Now(), Synced: true, Replicated: c.TXID})
	r.progress.setLocal(r.txid, r.txTime)
	r.o.Log.Info("carrying on the history the database was restored from", "target", c.URL, "txid", c.TXID, "snapshot", c.Snapshot)
}

// takeRestored is the first read transaction on a database restored from
// a target: with nothing in its log it is exactly the restored state, and
// the capture waits for the log's first generation; anything already in
// the log was written before ferry could see it, which is a break.
func (r *Replicator) takeRestored(tx *sql.Tx) error {
	if err := r.sizeFrom(tx); err != nil {
		return err
	}
	f, _, err := r.openLog()
	if err != nil {
		return err
	}
	r.posValid, r.gen = false, nil
	clear(r.overlay)
	r.durable = r.current()
	if f == nil {
		return nil
	}
	hdr, err := wal.ReadHeader(f)
	if errors.Is(err, wal.ErrNoHeader) || errors.Is(err, wal.ErrBadHeader) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read log header: %w", err)
	}
	if _, err := wal.NewReader(f, hdr).Next(); errors.Is(err, io.EOF) {
		return nil
	}
	return broke("the restored database was written before ferry took it over")
}
