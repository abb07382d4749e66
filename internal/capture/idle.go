package capture

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"syscall"
	"time"
)

// ErrIdle is what Run returns when the database went quiet with every
// transaction on every target, under Options.IdleAfter: the Replicator
// saved its state and let go of the database, the spool and every
// goroutine. A new Replicator opened with the same Options carries on
// from there; Idle says when one is needed.
var ErrIdle = errors.New("capture: the database is idle")

// quietMargin is how long the database file must have gone unwritten
// before ferry lets go of it. A file's modification time comes from a
// clock that ticks in milliseconds on Linux and in seconds on some file
// systems; a write made after ferry looked at the file must get a later
// time than the one ferry recorded, or the proof in quietMark would not
// hold.
const quietMargin = 2 * time.Second

// quietMark records the database file as ferry last saw it before letting
// go of the database. It is what lets an idle database hold no read
// transaction, and so no lock, without losing the guarantee the package
// documentation draws from one.
//
// SQLite destroys frames of the log only by restarting it, truncating it
// or deleting it, and each needs every frame copied into the database
// file first. The mark is taken before ferry's last pass over the log,
// which read every frame committed by then. So if, once a new read
// transaction is held again, the database file is the same file, unwritten
// since the mark (same inode, size and times), nothing committed after
// that pass was ever copied into it: no frame ferry has not read can have
// been destroyed. Whatever the log looks like then (the old generation
// continued, a new generation, an empty or missing log) it carries on
// from what ferry read, as it does while ferry holds a read transaction.
// When the file was written, a new generation is a break, answered with a
// snapshot and reported as a gap, as after any restart.
type quietMark struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
	CTime int64  `json:"ctime_ns"`
}

// markQuiet stats the database file for a quietMark; ok is false when it
// was written too recently to vouch for anything (see quietMargin).
func markQuiet(path string, now time.Time, margin time.Duration) (m quietMark, ok bool, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return m, false, err
	}
	st, isUnix := fi.Sys().(*syscall.Stat_t)
	if !isUnix {
		return m, false, nil
	}
	m = quietMark{Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size,
		MTime: st.Mtim.Nano(), CTime: st.Ctim.Nano()}
	old := now.Add(-margin).UnixNano()
	return m, m.MTime <= old && m.CTime <= old, nil
}

// holds reports whether the database file is still as m recorded it.
func (m quietMark) holds(path string) bool {
	// The file's age does not matter here, only that it is unchanged.
	now, _, err := markQuiet(path, time.Now(), 0)
	return err == nil && now == m
}

// Idle is what a Replicator that returned ErrIdle leaves for whoever
// wakes the database.
type Idle struct {
	// WALSize and WALModTime describe the log as ferry left it (zero
	// for no log): a commit changes one or both, and is what should wake
	// the database.
	WALSize    int64     `json:"wal_size"`
	WALModTime time.Time `json:"wal_mtime,omitzero"`
	// CheckedAt is when the log was looked at: a file event from then
	// on may be a commit ferry has not read.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// WakeAt, when not zero, is when the database needs a Replicator
	// even if nothing commits: a snapshot falls due then.
	WakeAt time.Time `json:"wake_at,omitzero"`
}

// LoadIdle reads the state a Replicator for dbPath saved in spoolDir,
// and returns what it left if it went idle, with its Status then, and
// false if it did not, or never ran. A process that replicates many
// databases starts the idle ones this way, without opening them.
func LoadIdle(spoolDir, dbPath string) (Idle, Status, bool, error) {
	st, err := loadState(spoolDir, dbPath)
	if err != nil || st == nil || st.Quiet == nil || st.Idle == nil {
		return Idle{}, Status{}, false, err
	}
	// Going idle needs every target synced and holding every txid.
	s := Status{DB: dbPath, TXID: st.TXID, Time: st.Time, Gaps: st.Gaps, Targets: []TargetStatus{}}
	for _, u := range slices.Sorted(maps.Keys(st.Targets)) {
		t := st.Targets[u]
		s.Targets = append(s.Targets, TargetStatus{URL: u, Replicated: t.Replicated, Snapshot: t.Snapshot, Synced: t.Synced})
	}
	return *st.Idle, s, true, nil
}

// Idle returns what the Replicator left when Run returned ErrIdle.
func (r *Replicator) Idle() Idle { return r.idle }

// idleDue reports whether everything is in place to let go of the
// database: quiet for IdleAfter, nothing to ship or snapshot, every
// target holding every transaction and answering.
func (r *Replicator) idleDue(now time.Time) bool {
	if r.o.IdleAfter <= 0 || r.job != nil || r.broken != nil || !r.protected ||
		r.sql == nil || !r.sql.held() || !r.batch.empty() || len(r.waiting) > 0 {
		return false
	}
	// Quiet since the last commit read from the log: a wake with no
	// commit (an event that was not one) lets go at once, and a database
	// opened only for its first snapshot as soon as that is stored.
	if now.Sub(r.lastCommit) < r.o.IdleAfter {
		return false
	}
	if len(r.due(now)) > 0 || r.sp.Bytes() > 0 {
		return false
	}
	for _, q := range r.queues {
		if r.sp.Len(q) > 0 {
			return false
		}
	}
	p := r.progress
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range r.urls {
		t := r.targets[u]
		if !t.synced || t.snapping || t.forced || t.stopped != "" || !t.failingSince.IsZero() ||
			t.reached() != r.txid || t.holdAfter > t.base {
			return false
		}
	}
	return true
}

// goIdle lets go of the database if it is still quiet: it marks the file
// (see quietMark), reads the log once more, and, with nothing new, saves
// the state with the mark. It returns false to go on capturing.
func (r *Replicator) goIdle(ctx context.Context, now time.Time) (bool, error) {
	margin := quietMargin
	if r.o.quietMargin > 0 {
		margin = r.o.quietMargin
	}
	// A Sync that came in meanwhile is answered first: its caller would
	// only wake the database again.
	select {
	case reply := <-r.syncReq:
		r.waiting = append(r.waiting, reply)
		return false, nil
	default:
	}
	mark, ok, err := markQuiet(r.o.DBPath, now, margin)
	if err != nil || !ok {
		return false, err
	}
	// The log is looked at before the last pass over it: a commit that
	// lands after the pass then shows as a log changed since, and wakes
	// the database, rather than being taken for what the pass read.
	idle := Idle{CheckedAt: time.Now()}
	if fi, err := os.Stat(r.walPath); err == nil {
		idle.WALSize, idle.WALModTime = fi.Size(), fi.ModTime()
	}
	before := r.txid
	if err := r.capturePass(ctx); err != nil {
		return false, err
	}
	if r.txid != before || !r.batch.empty() || r.syncing.Load() > 0 {
		return false, nil
	}
	r.idle = idle
	if next := r.nextSnapshot(); !next.IsZero() {
		r.idle.WakeAt = next
	}
	r.quiet = &mark
	r.saveIdle = &r.idle
	err = r.save()
	r.saveIdle = nil
	if err != nil || r.syncing.Load() > 0 {
		// A state saved as idle and then left behind is still true: the
		// next save replaces it, and a restart from it finds the mark.
		r.quiet = nil
		if err != nil {
			return false, fmt.Errorf("save the state before going idle: %w", err)
		}
		return false, nil
	}
	r.o.Log.Debug("idle: let go of the database until it is written", "txid", r.txid)
	return true, nil
}

// nextSnapshot returns when the first target falls due for a snapshot of
// what it holds now, or zero when none will without a new transaction.
func (r *Replicator) nextSnapshot() time.Time {
	var next time.Time
	for _, u := range r.urls {
		t := r.targets[u]
		if r.txid <= t.base {
			continue
		}
		at := t.baseTime.Add(r.o.SnapshotInterval)
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}
