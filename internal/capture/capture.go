package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/ferrydb/ferry/internal/wal"
)

// breakError says why the log no longer continues from what ferry
// captured; the capture answers it with a new txid that a snapshot
// carries.
type breakError struct{ err error }

func (e *breakError) Error() string { return e.err.Error() }
func (e *breakError) Unwrap() error { return e.err }

func broke(format string, args ...any) error {
	return &breakError{fmt.Errorf(format, args...)}
}

// errRetry means a pass stopped at a transaction whose frames changed
// while they were read. The next pass finds out why; until then the pass
// is not complete, so it cannot vouch for a new read transaction (see
// sqliteConns.handover): a frame that changed under a transaction ferry
// had not copied yet may have been lost to a restart of the log.
var errRetry = errors.New("a transaction's frames changed while they were read")

// errReopen means the database file itself was replaced: every
// connection and descriptor belongs to a file that is no longer the
// database.
var errReopen = errors.New("the database file was replaced")

// capturePass reads every transaction committed since r.pos into the
// batch, shipping the batch on the way whenever it is full. It returns a
// *breakError when the log no longer continues from r.pos, and errRetry
// when it stopped at a transaction whose frames changed under it.
//
// A pass reads what the log held when it began and stops there, so that an
// application writing faster than ferry reads cannot keep one pass, and
// everything waiting for it, going forever. That is still a complete pass
// in the sense sqliteConns.handover needs: every frame committed before
// the pass began (so before the read transaction it vouches for) is read.
func (r *Replicator) capturePass(ctx context.Context) error {
	if err := r.checkDB(); err != nil {
		return err
	}
	if !r.sql.writersLocked() {
		// Not under the writer lock: spooling saves the state, with an
		// fsync, and the application's commits would wait for it.
		r.landFlight(false)
	}
	f, end, err := r.openLog()
	if err != nil || f == nil {
		return err
	}
	if !r.posValid {
		hdr, err := wal.ReadHeader(f)
		if errors.Is(err, wal.ErrNoHeader) || errors.Is(err, wal.ErrBadHeader) {
			return nil // still no transaction in the new generation
		}
		if err != nil {
			return fmt.Errorf("read log header: %w", err)
		}
		if !r.protected {
			return broke("a new log generation began while ferry held no read transaction")
		}
		if hdr.PageSize != r.pageSize {
			return broke("the page size changed from %d to %d", r.pageSize, hdr.PageSize)
		}
		r.newGeneration(&hdr)
	}
	// The reader of the last pass, when it stopped where the capture
	// stands, goes on with its buffers; it checks the log again first, as
	// a new one would.
	rd := r.gen
	if rd != nil && rd.Position() == r.pos {
		rd.Recheck()
	} else {
		rd, err = wal.Resume(f, r.pos)
	}
	for {
		var txn wal.Txn
		if err == nil {
			txn, err = rd.Next()
		}
		var be *wal.BreakError
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			r.gen = rd
			return nil
		case errors.As(err, &be):
			if !r.protected || !newGeneration(be) {
				return &breakError{err}
			}
			// A new generation seen while protected continues the old one:
			// every frame of the old one was in the database file before
			// SQLite could restart the log, and ferry had read them all.
			r.o.Log.Debug("the log started a new generation", "after", r.pos, "how", be.Reason)
			if be.Reason == wal.BreakTruncated {
				r.newGeneration(nil)
				return nil
			}
			r.newGeneration(&be.Header)
			rd, err = wal.NewReader(f, be.Header), nil
			continue
		default:
			return fmt.Errorf("read log: %w", err)
		}
		if err = r.addTxn(rd, txn); err != nil {
			if errors.Is(err, wal.ErrChanged) {
				return fmt.Errorf("%w: %v", errRetry, err)
			}
			return err
		}
		if r.batch.full() && !r.sql.writersLocked() {
			// Under the writer lock the batch waits: the application's
			// commits would wait for the change set to be written.
			r.shipAhead()
		}
		if r.pos.Offset >= end {
			r.gen = rd
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// shipAhead hands the full batch over to a flight that writes its change
// set off the capture loop (see batch), once the flight before it, if
// any, has landed, and captures on into a new batch.
func (r *Replicator) shipAhead() {
	if !r.landFlight(true) {
		return
	}
	next, err := r.batch.seal(r.current())
	if err != nil {
		// Written on the loop instead, where its error is answered.
		r.shipBatch()
		return
	}
	r.batch = next
}

// landFlight spools the change set of the batch in flight ahead of the
// batch, if any: once its flight has written it, or, with wait, waiting
// for that. The flight's batch goes through shipBatch as the batch of the
// moment, as it would have without a flight. If it cannot be spooled, it
// takes back the transactions captured after it (see absorb) and is the
// batch again, to be retried whole. landFlight reports whether no batch is
// in flight any more: false only when that could not be done either, and
// nothing may be spooled before the batch in flight.
func (r *Replicator) landFlight(wait bool) bool {
	live := r.batch
	f := live.ahead
	if f == nil {
		return true
	}
	if !wait {
		select {
		case <-f.done:
		default:
			return false
		}
	}
	<-f.done
	live.ahead = nil
	r.batch = f.b
	r.shipBatch()
	r.batch = live
	if f.b.empty() {
		live.spare = f.b
		return true
	}
	if err := f.b.absorb(live); err != nil {
		r.fail(err)
		live.ahead = f
		return false
	}
	r.batch = f.b
	return true
}

// batchEnd is where the capture stood after the batch's last
// transaction: durable once the batch is spooled.
func (r *Replicator) batchEnd() point {
	if r.batch.sealed {
		return r.batch.end
	}
	return r.current()
}

// newGeneration reports whether a break is only the log starting a new
// generation (or being emptied for one), as opposed to a log that was cut,
// overwritten or replaced.
func newGeneration(be *wal.BreakError) bool {
	switch be.Reason {
	case wal.BreakSeq, wal.BreakSalt:
		return true
	case wal.BreakTruncated:
		return errors.Is(be.Err, wal.ErrNoHeader)
	}
	return false
}

// newGeneration moves the capture to the start of the generation hdr
// describes, or, with nil, to waiting for one. Every page of the old
// generation is in the database file by now, so the overlay starts empty.
func (r *Replicator) newGeneration(hdr *wal.Header) {
	clear(r.overlay)
	r.gen = nil
	if hdr == nil {
		r.posValid = false
		return
	}
	r.pos, r.posValid = hdr.Start(), true
}

// addTxn copies one committed transaction into the batch and gives it the
// next txid.
func (r *Replicator) addTxn(rd *wal.Reader, txn wal.Txn) error {
	if len(r.page) != r.pageSize {
		r.page = make([]byte, r.pageSize)
	}
	txid := r.txid + 1
	at := time.Now()
	r.lastCommit = at
	r.budget.commit(at)
	if at.Before(r.txTime) {
		at = r.txTime
	}
	// While every target waits for a snapshot nobody can use a change
	// set: the transaction is numbered and its pages marked dirty, but not
	// copied, which keeps ferry abreast of the log even when the spool has
	// no room.
	record := r.anySynced()
	if !record && !r.batch.empty() {
		r.clearBatch()
	}
	mark := r.batch.mark()
	var err error
	if record {
		err = r.batch.begin(txid, at, txn.Commit, len(txn.Pages), r.pageSize)
	}
	for i := 0; record && err == nil && i < len(txn.Pages); i++ {
		ref := txn.Pages[i]
		if txn.Data != nil {
			// As the scan read and verified it: read once.
			err = r.batch.page(ref.Pgno, txn.Data[i])
		} else if err = rd.ReadPage(ref, r.page); err == nil {
			err = r.batch.page(ref.Pgno, r.page)
		}
	}
	if err != nil {
		if rerr := r.batch.rollback(mark); rerr != nil {
			return fmt.Errorf("%w (and rolling back the batch: %v)", err, rerr)
		}
		return err
	}
	if record {
		r.batch.commit(txid)
	}
	r.lay(txn, r.dbSize)
	for _, t := range r.targets {
		for _, ref := range txn.Pages {
			t.dirty.AddPage(r.pageSize, ref.Pgno)
		}
	}
	r.logBytes.Add(txn.End.Offset - txn.Start.Offset)
	r.txid, r.txTime, r.dbSize, r.pos = txid, at, txn.Commit, txn.End
	r.gen = rd
	if !record {
		r.durable = r.current()
	}
	r.progress.setLocal(txid, at)
	return nil
}

// openLog returns the log file, opening it when needed, and its size; or
// nil when there is none and none is needed. SQLite never deletes or
// recreates the log while a connection (ferry's) is open, so a log file
// that vanished or was replaced under a position is a break.
func (r *Replicator) openLog() (*os.File, int64, error) {
	st, err := os.Stat(r.walPath)
	if errors.Is(err, fs.ErrNotExist) {
		if r.log != nil {
			r.log.Close()
			r.log, r.gen = nil, nil
		}
		if r.posValid {
			return nil, 0, broke("the log file %s was deleted", r.walPath)
		}
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("stat log: %w", err)
	}
	if r.log != nil {
		if cur, err := r.log.Stat(); err == nil && os.SameFile(cur, st) {
			return r.log, st.Size(), nil
		}
		r.log.Close()
		r.log, r.gen = nil, nil
		if r.posValid {
			return nil, 0, broke("the log file %s was replaced", r.walPath)
		}
	}
	f, err := os.Open(r.walPath)
	if err != nil {
		return nil, 0, fmt.Errorf("open log: %w", err)
	}
	// A reader of another file must not be taken for one of this.
	r.log, r.gen = f, nil
	return f, st.Size(), nil
}

// checkDB returns errReopen when the file at the database's path is no
// longer the one ferry opened.
func (r *Replicator) checkDB() error {
	st, err := os.Stat(r.o.DBPath)
	if err != nil {
		return fmt.Errorf("stat database: %w", err)
	}
	if !os.SameFile(r.dbInfo, st) {
		return errReopen
	}
	return nil
}
