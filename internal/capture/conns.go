package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the SQLite that holds ferry's read transactions and runs its checkpoints
)

// sqliteConns are ferry's own connections to the database: two read-only
// ones that take turns holding the read transaction that protects the log
// (see the package documentation), one read-write one that only ever runs
// checkpoints, and one that only ever holds SQLite's writer lock, briefly,
// so that a checkpoint can finish while the application writes without a
// pause. None of them writes a row.
//
// Read-only connections never checkpoint or delete the log when they
// close, even when they are the last connection to the database; the
// read-write one is closed first, while the readers are still open, so
// that it is never the last and never does either.
type sqliteConns struct {
	ro      *sql.DB
	readers [2]*sql.Conn
	txs     [2]*sql.Tx
	cur     int // index of the reader holding a transaction, -1 for none

	rw   *sql.DB
	ckpt *sql.Conn
	lock *sql.Conn
	// locked is set while lock holds SQLite's writer lock, maybeLocked
	// while ckpt may hold it.
	locked, maybeLocked bool
	// busy is ckpt's busy timeout.
	busy time.Duration

	// markAt is how many frames of the log's generation the capture had
	// read when the transaction held began: its read mark is there or
	// later (see Replicator.markDue).
	markAt int64

	// hold keeps the application's own checkpoints out while the
	// capture asks it to (see checkpointHold); nil when none could be had.
	hold *checkpointHold

	// lockWait is how long lockWriters asks for the writer lock (see
	// the constant), and lockTries how many times it last asked, for the
	// debug log.
	lockWait  time.Duration
	lockTries int
}

// lockWait is the most ferry waits for SQLite's writer lock. It holds
// nothing while it waits, so the application loses nothing by it; a
// short wait only keeps what ferry found left to read and copy before it
// asked from growing much by the time it has the lock.
//
// It asks again every lockRetryPause rather than through SQLite's busy
// handler, which sleeps 1 ms and then 2 ms between its tries: against a
// writer at full speed, which holds the lock nearly all the time and
// lets it go for a few microseconds between commits, three tries lost
// more often than not, and each loss let the log run on for another
// longLogCheckpointEvery, until it took a RESTART checkpoint (which holds
// the commits longer) to restart it. A try that fails costs about ten
// microseconds and holds nothing. For the first lockSpin the capture
// yields between tries rather than sleeping (time.Sleep of 50 us slept
// about 0.7 ms on a busy machine, the runtime's timers being that coarse
// there); then it sleeps, so that a lock held for long, by an
// application's long write transaction, costs ferry at most lockSpin of
// CPU per attempt.
const (
	lockWait       = 3 * time.Millisecond
	lockRetryPause = 50 * time.Microsecond
	lockSpin       = time.Millisecond
)

// sqliteURI turns a path into a SQLite URI filename, escaping what SQLite
// would otherwise read as a query or fragment.
func sqliteURI(path string, params ...string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "file:" + strings.Join(segs, "/") + "?" + strings.Join(params, "&")
}

// openConns opens ferry's connections to the database at path and checks,
// read-only, that it is a SQLite database in WAL mode. The read-write
// connection is opened only once that is known: opening one on a database
// with a hot rollback journal would roll it back, a write.
func openConns(ctx context.Context, path string, busy time.Duration, alone bool) (*sqliteConns, error) {
	c := &sqliteConns{cur: -1, busy: busy, lockWait: min(lockWait, busy)}
	var err error
	// A reader waits longer than a checkpoint: taking a read mark only
	// contends with other connections' brief lock operations.
	c.ro, err = sql.Open("sqlite", sqliteURI(path, "mode=ro", "_pragma=busy_timeout(5000)"))
	if err != nil {
		return nil, err
	}
	c.ro.SetMaxOpenConns(2)
	for i := range c.readers {
		if c.readers[i], err = c.ro.Conn(ctx); err != nil {
			c.close()
			return nil, err
		}
	}
	var mode string
	var pages int64
	err = c.readers[0].QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
	if err == nil {
		err = c.readers[0].QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages)
	}
	if err := checkMode(mode, pages, err); err != nil {
		c.close()
		return nil, err
	}
	// mode=rw: never create the database if it vanished meanwhile.
	c.rw, err = sql.Open("sqlite", sqliteURI(path, "mode=rw", fmt.Sprintf("_pragma=busy_timeout(%d)", max(1, busy.Milliseconds()))))
	if err == nil {
		c.rw.SetMaxOpenConns(2)
		c.ckpt, err = c.rw.Conn(ctx)
	}
	if err == nil {
		c.lock, err = c.rw.Conn(ctx)
	}
	if err == nil {
		// lockWriters waits itself.
		_, err = c.lock.ExecContext(ctx, "PRAGMA busy_timeout=0")
	}
	if err != nil {
		c.close()
		return nil, err
	}
	c.hold = openCheckpointHold(path, alone)
	return c, nil
}

// held reports whether a read transaction is held.
func (c *sqliteConns) held() bool { return c.cur >= 0 }

// tx returns the read transaction held, or nil.
func (c *sqliteConns) tx() *sql.Tx {
	if c.cur < 0 {
		return nil
	}
	return c.txs[c.cur]
}

// handover begins a read transaction on the idle reader, runs pass (a
// complete pass over the log) with it, and only then ends the transaction
// the other reader held, so that the log is protected at every instant. If
// begin or pass fails, the new transaction is dropped and the old one
// stays.
func (c *sqliteConns) handover(ctx context.Context, pass func(tx *sql.Tx) error) error {
	next := 0
	if c.cur == 0 {
		next = 1
	}
	if err := c.hold.recheck(); err != nil {
		return err
	}
	tx, err := beginRead(ctx, c.readers[next])
	if err != nil {
		return err
	}
	if err := pass(tx); err != nil {
		tx.Rollback()
		return err
	}
	if c.cur >= 0 {
		c.txs[c.cur].Rollback()
		c.txs[c.cur] = nil
	}
	c.txs[next], c.cur = tx, next
	return nil
}

// beginRead starts a read transaction and makes SQLite take its read mark.
func beginRead(ctx context.Context, conn *sql.Conn) (*sql.Tx, error) {
	// The transaction must outlive ctx: database/sql rolls a transaction
	// back when the context it began with ends.
	tx, err := conn.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return nil, fmt.Errorf("begin read transaction: %w", err)
	}
	var n int64
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("begin read transaction: %w", err)
	}
	return tx, nil
}

// releaseAll ends every read transaction.
func (c *sqliteConns) releaseAll() {
	for i, tx := range c.txs {
		if tx != nil {
			tx.Rollback()
			c.txs[i] = nil
		}
	}
	c.cur = -1
}

// ckptResult is what PRAGMA wal_checkpoint reports: whether it was kept
// from finishing, the frames in the log, and the frames now copied into
// the database file.
type ckptResult struct {
	busy       bool
	log, moved int64
}

// complete reports whether every frame of the log is in the database file.
func (r ckptResult) complete() bool { return !r.busy && r.log == r.moved }

// checkpoint runs PRAGMA wal_checkpoint(mode). A checkpoint that could not
// get its locks within the busy timeout is not an error: it reports busy.
func (c *sqliteConns) checkpoint(ctx context.Context, mode string) (ckptResult, error) {
	var busy, log, moved int64
	err := c.hold.release(func() error {
		return c.ckpt.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &log, &moved)
	})
	if err != nil {
		if isBusy(err) {
			return ckptResult{busy: true}, nil
		}
		return ckptResult{}, fmt.Errorf("checkpoint %s: %w", mode, err)
	}
	return ckptResult{busy: busy != 0, log: log, moved: moved}, nil
}

// lockWriters takes SQLite's writer lock, waiting at most lockWait (or
// the busy timeout, when shorter), so that no commit lands until
// unlockWriters. It reports false, without an error, when the lock stayed
// busy.
func (c *sqliteConns) lockWriters(ctx context.Context) (bool, error) {
	if beginImmediateLoses.Load() {
		return false, nil
	}
	start := time.Now()
	deadline := start.Add(c.lockWait)
	c.lockTries = 0
	for {
		c.lockTries++
		_, err := c.lock.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil {
			c.locked = true
			return true, nil
		}
		if !isBusy(err) {
			return false, fmt.Errorf("take the writer lock: %w", err)
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		if time.Since(start) >= lockSpin {
			time.Sleep(lockRetryPause)
			continue
		}
		for t := time.Now(); time.Since(t) < lockRetryPause; {
			runtime.Gosched()
		}
	}
}

// beginImmediateLoses, set by tests, makes lockWriters find the writer
// lock busy without asking SQLite, as it does, most of the time, against
// a writer at full speed: the checkpoints then take the RESTART way.
var beginImmediateLoses atomic.Bool

// unlockWriters ends the transaction lockWriters began; it wrote nothing.
func (c *sqliteConns) unlockWriters() error {
	// Not bound to a context: the lock must be released whatever happens.
	if _, err := c.lock.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		return fmt.Errorf("release the writer lock: %w", err)
	}
	c.locked = false
	return nil
}

// restart runs a RESTART checkpoint whose waits, for the writer lock
// and for readers, sleep at most wait in all (see restartWait), and runs
// it again, for up to within, while another connection's checkpoint
// keeps it from starting: SQLite does not wait for that one.
func (c *sqliteConns) restart(ctx context.Context, wait, within time.Duration) (ckptResult, error) {
	set := func(d time.Duration) error {
		_, err := c.ckpt.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout=%d", max(1, d.Milliseconds())))
		return err
	}
	if err := set(wait); err != nil {
		return ckptResult{}, fmt.Errorf("checkpoint RESTART: %w", err)
	}
	deadline := time.Now().Add(within)
	var res ckptResult
	var err error
	for {
		res, err = c.checkpoint(ctx, "RESTART")
		if err != nil || !res.busy || res.log >= 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(restartRetryPause)
	}
	if serr := set(c.busy); err == nil && serr != nil {
		err = fmt.Errorf("checkpoint RESTART: %w", serr)
	}
	return res, err
}

// mayLock marks the time during which a checkpoint of ferry's may hold
// the writer lock: writersLocked reports true meanwhile.
func (c *sqliteConns) mayLock(on bool) { c.maybeLocked = on }

// writersLocked reports whether ferry holds SQLite's writer lock: every
// commit of the application waits meanwhile, so nothing but what the
// checkpoint needs may be done.
func (c *sqliteConns) writersLocked() bool { return c != nil && (c.locked || c.maybeLocked) }

func isBusy(err error) bool {
	return strings.Contains(err.Error(), "SQLITE_BUSY") || strings.Contains(err.Error(), "database is locked")
}

// close closes the checkpoint connection first and the readers last, so
// that no connection of ferry's is ever the last one, except a read-only
// one, which leaves the log alone.
func (c *sqliteConns) close() error {
	// The hold is let go first, since closing the read-write connection
	// may try a checkpoint, and ends last, once no connection of ferry's
	// holds a lock on the -shm file.
	errs := []error{c.hold.set(false)}
	if c.ckpt != nil {
		errs = append(errs, c.ckpt.Close())
	}
	if c.lock != nil {
		errs = append(errs, c.lock.Close())
	}
	if c.rw != nil {
		errs = append(errs, c.rw.Close())
	}
	c.releaseAll()
	for _, r := range c.readers {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	if c.ro != nil {
		errs = append(errs, c.ro.Close())
	}
	errs = append(errs, c.hold.close())
	c.hold = nil
	return errors.Join(errs...)
}
