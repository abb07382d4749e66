package restore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the SQLite that checks every restored database

	"github.com/ferrydb/ferry/internal/durable"
	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// Options tune a restore.
type Options struct {
	// Parallelism is how many chunks are fetched at once; zero means 8.
	Parallelism int
	// Before, when set, ends the restore at the last transaction committed
	// at or before it, however far the plan reaches.
	Before time.Time
	// Progress, when set, is told of each segment applied.
	Progress func(applied, total int)
	// Keys check the chunk addresses of an encrypted replica; nil for a
	// replica without encryption.
	Keys snapshot.Keys
}

// Result describes the database a restore wrote.
type Result struct {
	TXID     uint64    `json:"txid"`
	Time     time.Time `json:"time"`
	PageSize int       `json:"page_size"`
	Pages    uint32    `json:"pages"`
}

// ToFile carries out plan into the file out, which must not exist. The
// database is built in a temporary file beside out, checked with SQLite's
// PRAGMA integrity_check, fsynced, and only then renamed to out: out either
// does not exist or holds a complete, checked database.
//
// A change set of the plan that has gone missing since the plan was made,
// or that turns out damaged, is planned around from where the restore
// stands: the replica's change sets are listed again and the restore goes
// on with another chain that does without it, if one reaches plan.TXID.
// Compaction makes both happen: it deletes small change sets once a
// merged one holds their transactions, and while both exist a damaged
// merged one leaves the small ones to fall back on.
func ToFile(ctx context.Context, store objstore.Store, plan Plan, out string, o Options) (Result, error) {
	if o.Parallelism <= 0 {
		o.Parallelism = 8
	}
	m, err := snapshot.Load(ctx, store, plan.Snapshot.TXID)
	if err != nil {
		return Result{}, err
	}
	if !o.Before.IsZero() && m.Time.After(o.Before) {
		return Result{}, fmt.Errorf("snapshot %s was taken at %s, after %s", m.Key(), m.Time.Format(time.RFC3339Nano), o.Before.Format(time.RFC3339Nano))
	}
	dir := filepath.Dir(out)
	if err := durable.RemoveLeftBehind(out, tempInfix); err != nil {
		return Result{}, err
	}
	tmp, err := durable.CreateBeside(out, tempInfix)
	if err != nil {
		return Result{}, fmt.Errorf("create temporary file beside %s: %w", out, err)
	}
	committed := false
	defer func() {
		tmp.Close()
		if !committed {
			removeDB(tmp.Name())
		}
	}()
	if err := snapshot.Restore(ctx, store, m, tmp, o.Parallelism, o.Keys); err != nil {
		return Result{}, err
	}
	st := &state{f: tmp, res: Result{TXID: m.TXID, Time: m.Time, PageSize: m.PageSize, Pages: m.PageCount}, target: plan.TXID, before: o.Before}
	queue := plan.Segments
	var avoid map[string]string
	for applied := 0; len(queue) > 0; {
		ref := queue[0]
		done, err := st.applySegment(ctx, store, ref, out)
		if err != nil {
			if !replannable(err) || len(avoid) == maxReplans {
				return Result{}, &StoppedError{TXID: st.res.TXID, Err: err}
			}
			if avoid == nil {
				avoid = map[string]string{}
			}
			avoid[ref.Key] = err.Error()
			queue, err = replan(ctx, store, st.res.TXID, plan.TXID, avoid, err)
			if err != nil {
				return Result{}, &StoppedError{TXID: st.res.TXID, Err: err}
			}
			continue
		}
		queue = queue[1:]
		applied++
		if o.Progress != nil {
			o.Progress(applied, applied+len(queue))
		}
		if done {
			break
		}
	}
	if o.Before.IsZero() && st.res.TXID != plan.TXID {
		return Result{}, fmt.Errorf("segments end at txid %d, short of txid %d", st.res.TXID, plan.TXID)
	}
	if !o.Before.IsZero() && !st.pastBefore && plan.broken != nil {
		// Every transaction up to the break was at or before the time
		// asked for, so the one wanted may be among those past the break.
		return Result{}, &StoppedError{TXID: st.res.TXID, Err: fmt.Errorf("the last transaction at or before %s may lie past the break: %w", o.Before.Format(time.RFC3339Nano), plan.broken)}
	}
	// The file's fsync and SQLite's check of it run at once: the one
	// waits on the disk, the other on the CPU, and each takes about as
	// long as the other. The file is renamed into place only once both
	// have succeeded.
	synced := make(chan error, 1)
	go func() { synced <- tmp.Sync() }()
	checkErr := IntegrityCheck(ctx, tmp.Name())
	if err := <-synced; err != nil {
		return Result{}, fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if checkErr != nil {
		return Result{}, fmt.Errorf("restored database at txid %d fails SQLite's check, so it was not written to %s: %w", st.res.TXID, out, checkErr)
	}
	if _, err := os.Lstat(out); err == nil {
		return Result{}, fmt.Errorf("%s appeared while restoring; not replaced", out)
	}
	// Renamed while still open: the temporary file's lock says it is in
	// use until it has its name (see durable.CreateBeside).
	if err := os.Rename(tmp.Name(), out); err != nil {
		return Result{}, fmt.Errorf("rename into %s: %w", out, err)
	}
	committed = true
	if err := durable.SyncDir(dir); err != nil {
		return Result{}, err
	}
	return st.res, nil
}

// tempInfix names the files a restore into out builds beside it (see
// durable.CreateBeside): the database, and each change set while it is
// applied.
const tempInfix = ".ferry-restore-"

// maxReplans bounds how often one restore plans its chain again. Each
// re-plan avoids the segment that failed, so none is tried twice; the
// bound only stops a replica full of damaged overlapping change sets from
// costing a listing per object. Two would do for what compaction causes
// (a small change set deleted under the restore, and a damaged merged one
// whose small ones remain); the rest is slack.
const maxReplans = 4

// replannable reports whether a segment that failed may be held by
// others: one that went away after the plan was made (compaction deletes
// small change sets once a merged one holds their transactions, gc
// deletes expired ones), or one that is damaged where another change set
// may hold the same transactions.
func replannable(err error) bool {
	return objstore.IsNotFound(err) || errors.Is(err, objstore.ErrCorrupt)
}

// replan lists the replica's change sets again and returns a chain that
// carries the database from txid from to txid to without the segments in
// avoid (key to why), or cause, noting the re-plan, when none does. Only
// change sets are listed: the snapshot is already applied, and nothing
// before from matters any more.
func replan(ctx context.Context, store objstore.Store, from, to uint64, avoid map[string]string, cause error) ([]SegmentRef, error) {
	l, err := layout.Read(ctx, store, layout.Segments, segment.Heads(store))
	if err != nil {
		return nil, fmt.Errorf("%w; listing change sets to plan around it: %v", cause, err)
	}
	c := NewCatalog(nil, l.Segments).Without(avoid)
	segs, reached := c.chain(from, to)
	if reached < to {
		return nil, fmt.Errorf("%w; no other change sets reach past txid %d", cause, reached)
	}
	return segs, nil
}

// state is the database being rebuilt and how far it has come.
type state struct {
	f      *os.File
	res    Result
	target uint64
	before time.Time
	// pastBefore records that a transaction committed after before was
	// seen, which proves the one before it the last at or before.
	pastBefore bool
}

// applySegment downloads one segment into a private temporary file,
// verifies all of it, then applies its transactions after the current one,
// stopping at the target. It reports whether the target was reached.
func (st *state) applySegment(ctx context.Context, store objstore.Store, ref SegmentRef, out string) (bool, error) {
	f, err := durable.CreateBeside(out, tempInfix)
	if err != nil {
		return false, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	rc, _, err := store.Get(ctx, ref.Key, nil)
	if err != nil {
		return false, fmt.Errorf("fetch segment: %w", err)
	}
	_, err = io.Copy(f, rc)
	rc.Close()
	if err != nil {
		return false, fmt.Errorf("fetch segment %s: %w", ref.Key, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	r, _, err := segment.Open(f, segment.Options{Key: ref.Key})
	if err != nil {
		return false, err
	}
	defer r.Close()
	if ps := r.Header().PageSize; ps != st.res.PageSize {
		return false, fmt.Errorf("segment %s has %d-byte pages where the database has %d: the chain is broken", ref.Key, ps, st.res.PageSize)
	}
	for {
		txn, err := r.Next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if txn.TXID <= st.res.TXID {
			continue
		}
		if txn.TXID != st.res.TXID+1 {
			return false, fmt.Errorf("segment %s starts at txid %d, after txid %d: the chain has a gap", ref.Key, txn.TXID, st.res.TXID)
		}
		if !st.before.IsZero() && txn.Time.After(st.before) {
			st.pastBefore = true
			return true, nil
		}
		if txn.TXID > st.target {
			return true, nil
		}
		if err := st.apply(r, txn); err != nil {
			return false, fmt.Errorf("apply txid %d from %s: %w", txn.TXID, ref.Key, err)
		}
		if txn.TXID == st.target {
			return true, nil
		}
	}
}

func (st *state) apply(r *segment.Reader, txn segment.Txn) error {
	ps := int64(st.res.PageSize)
	for {
		p, err := r.NextPage()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if _, err := st.f.WriteAt(p.Data, int64(p.Pgno-1)*ps); err != nil {
			return err
		}
	}
	if err := st.f.Truncate(int64(txn.DBSize) * ps); err != nil {
		return err
	}
	st.res.TXID, st.res.Time, st.res.Pages = txn.TXID, txn.Time, txn.DBSize
	return nil
}

// IntegrityCheck runs PRAGMA integrity_check on the database at path and
// returns its complaints as an error.
func IntegrityCheck(ctx context.Context, path string) error {
	// Through a memory map, SQLite reads the pages the check walks
	// without a system call each: three times faster on a large file.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=mmap_size(1099511627776)")
	if err != nil {
		return err
	}
	defer func() {
		db.Close()
		// A database in WAL mode leaves its -wal and -shm files behind if
		// the last connection could not clean up; they belong to nobody.
		os.Remove(path + "-wal")
		os.Remove(path + "-shm")
	}()
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("integrity check: %s", problems[0])
	}
	return nil
}

func removeDB(path string) {
	os.Remove(path)
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")
}
