package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ferrydb/ferry/internal/wal"
)

// checkpointEvery spaces ferry's attempts to let the log restart, and
// longLogCheckpointEvery those made once the log is past TruncatePages,
// when the attempts take SQLite's writer lock: a writer at full speed
// appends a few MiB to the log in that time.
const (
	checkpointEvery        = time.Second
	longLogCheckpointEvery = 20 * time.Millisecond
)

// lockedTail is the most frames a checkpoint under the writer lock may
// find left to copy before it takes the lock: the lock is held while it
// reads and copies them (and what lands while it waits for the lock),
// and the application's commits wait for as long (a millisecond or two
// for 1 MiB of 4 KiB pages on an idle disk). convergeRounds is how many
// copies, each after a read of the log, it makes at most to get there.
const (
	lockedTail     = 256
	convergeRounds = 4
)

// markDue reports whether the capture has read CheckpointPages frames
// past its read mark: then it moves the mark (see moveMark). Moving it
// on every pass instead would let the application's own automatic
// checkpoints, which copy up to the mark, copy a few frames at a time,
// each copy with two fsyncs in the application's commit.
func (r *Replicator) markDue() bool {
	if !r.posValid {
		return false
	}
	frames, at := r.pos.Frames(), r.sql.markAt
	if frames < at {
		at = 0 // a new generation
	}
	return frames-at >= int64(r.o.CheckpointPages)
}

// moveMark moves the read mark to the end of the log, as the capture
// reads it, and copies what ferry read into the database file with a
// PASSIVE checkpoint, off the application's commits: the application's
// automatic checkpoints then find little or nothing left to copy, and copy
// in steps no smaller than without ferry when they do. Not while a
// snapshot reads pages through the transaction held.
func (r *Replicator) moveMark(ctx context.Context) error {
	if err := r.refresh(ctx); err != nil {
		return err
	}
	// Once: if the application's own checkpoint is running, it copies.
	_, err := r.runCheckpoint(ctx, "PASSIVE")
	return err
}

// maybeCheckpoint keeps the log short while ferry's read transaction holds
// SQLite's own restarts back. Each step keeps the log protected (see the
// package documentation), so none of them can lose a frame ferry has not
// read:
//
//  1. Refresh the read transaction, so that its read mark is the end of
//     the log, and run a PASSIVE checkpoint: it copies every frame up to
//     that mark without taking any lock the application waits for. Again,
//     a few times, while each finds less left to copy.
//  2. Only when the log has grown past TruncatePages, which means PASSIVE
//     checkpoints keep losing the race with new commits, and once step 1
//     left at most lockedTail frames to read and to copy, take SQLite's
//     writer lock, waiting for it at most lockWait, and, while it holds
//     commits back, refresh and run PASSIVE again: with no commit landing
//     in between, this one copies the few frames left, and a last refresh
//     puts the read transaction on SQLite's slot 0 (step 3) before the
//     lock is let go. The application's commits wait only for that short
//     copy, never for a reader, and never for a change set to be written:
//     none is shipped under the lock. Against a writer at full speed
//     BEGIN IMMEDIATE mostly loses the lock; once the log is past
//     restartFrames, a RESTART checkpoint asks for it instead (see
//     checkpointRestart).
//  3. Once every frame is in the database file, refresh once more: begun
//     now, before anything new commits, the read transaction sits on
//     SQLite's slot 0, which lets the application's next commit restart
//     the log from the top. When the log file itself has grown past
//     twice TruncatePages (the log once ran long, while ferry was down or
//     could not keep up) and no commit came in meanwhile, a TRUNCATE
//     checkpoint also shrinks it, with nothing left to copy and under the
//     same busy timeout. (A file of the size restarts keep it at is left
//     alone: a restarted log is written over in place, and truncating it
//     would only have SQLite allocate the same blocks again.)
//
// FULL is never used, and RESTART only with ferry's reader moving on
// while it waits (checkpointRestart): both hold the writer lock while
// they wait for readers, ferry's own included, to move on, which a
// reader held still never does in time.
func (r *Replicator) maybeCheckpoint(ctx context.Context, now time.Time) error {
	if err := r.holdCheckpoints(now); err != nil {
		return err
	}
	if r.job != nil || r.broken != nil || !r.protected || !r.posValid {
		return nil
	}
	frames := r.pos.Frames()
	fileFrames := r.logFileFrames()
	if frames == 0 || (frames < int64(r.o.CheckpointPages) && fileFrames < r.truncateFrames()) {
		return nil
	}
	every := checkpointEvery
	if frames >= int64(r.o.TruncatePages) {
		every = longLogCheckpointEvery
	}
	if now.Sub(r.lastCkpt) < every {
		return nil
	}
	err := r.checkpoint(ctx, frames, fileFrames)
	r.lastCkpt = time.Now()
	return err
}

// holdCheckpoints takes SQLite's checkpoint lock, or lets it go, so that
// it is held while the application commits into a log that ferry
// protects (see checkpointHold): ferry then runs the checkpoints, and the
// application's automatic ones, which would find little to copy, are not
// tried after each of its commits. Held before the log reaches the
// application's threshold too, so that none slips in while ferry has yet
// to notice it did. It is let go once no commit came for holdIdle, so
// that an application that stopped writing (or whose writer died while
// updating the wal-index) can checkpoint, or recover the index, soon
// after.
func (r *Replicator) holdCheckpoints(now time.Time) error {
	if r.sql == nil {
		return nil
	}
	want := r.broken == nil && r.protected && r.posValid && now.Sub(r.lastCommit) < holdIdle
	return r.sql.hold.set(want)
}

// holdIdle is how long after the application's last commit ferry keeps
// the checkpoint lock.
const holdIdle = 100 * time.Millisecond

// truncateFrames is the size of the log file, in frames, past which a
// checkpoint that empties the log also truncates the file.
func (r *Replicator) truncateFrames() int64 { return 2 * int64(r.o.TruncatePages) }

func (r *Replicator) checkpoint(ctx context.Context, frames, fileFrames int64) error {
	long := frames >= int64(r.o.TruncatePages)
	var res ckptResult
	for round := 0; ; round++ {
		// Each round reads the log to its end on a new read transaction
		// and copies up to there: what came in during the round before, so
		// each is shorter. The round after a copy that reached the end of
		// the log with no commit since puts the transaction on slot 0.
		if err := r.refresh(ctx); err != nil {
			return err
		}
		if !r.posValid {
			return nil
		}
		if round > 0 && res.complete() && r.pos.Frames() == res.log {
			return r.truncate(ctx, fileFrames)
		}
		if round == convergeRounds {
			break
		}
		var err error
		if res, err = r.passive(ctx); err != nil || res.busy {
			return err
		}
		if !long {
			continue
		}
		// Under steady writes: read on without moving the read mark, so
		// that the application's own checkpoints find nothing to copy,
		// and take the writer lock once little is left.
		if err := r.capturePass(ctx); err != nil {
			return err
		}
		if !r.posValid {
			return nil
		}
		if res.complete() && r.pos.Frames() == res.log {
			// Nothing committed since the copy (the application paused
			// after a burst): the next round's refresh lands on slot 0
			// without holding anybody's commits back.
			continue
		}
		if left := r.pos.Frames() - res.moved; left <= lockedTail {
			return r.checkpointLocked(ctx)
		}
	}
	if long {
		r.o.Log.Debug("checkpoint with the writer lock skipped: too much left to copy", "frames", r.pos.Frames()-res.moved)
	}
	return nil
}

// checkpointLocked is step 2 of maybeCheckpoint: a PASSIVE checkpoint
// with the application's commits held back, so that it finishes, and
// step 3 before they go on. The caller made sure that little is left to
// read and to copy: the commits wait for as long as the lock is held,
// and that is as long as reading and copying what is left takes.
// (SQLite's index says how much is left, but reading it would mean
// opening and closing the -shm file, and closing any descriptor of a
// file drops every POSIX lock the process holds on it: ferry's read
// marks, and an embedding application's own.)
//
// No TRUNCATE under the lock: the connection that holds it holds a read
// mark too, taken before the log was all copied, and a TRUNCATE waits
// for every such reader, its busy timeout long, with the commits held.
func (r *Replicator) checkpointLocked(ctx context.Context) error {
	if r.log != nil {
		// The copy under the lock syncs the log before it copies the
		// frames left, and the commits wait for that sync: most of those
		// frames are written by now, and go to disk here, while the
		// commits go on. A failure is the sync under the lock's to
		// report.
		r.log.Sync()
	}
	locked, err := r.sql.lockWriters(ctx)
	if err == nil && !locked && r.pos.Frames() >= r.restartFrames() {
		// Lost against a writer that keeps the lock nearly all the time,
		// and often enough that the log has run long.
		return r.checkpointRestart(ctx)
	}
	if err != nil || !locked {
		r.o.Log.Debug("checkpoint with the writer lock skipped: the lock stayed busy", "tries", r.sql.lockTries, "err", err)
		return err
	}
	start := time.Now()
	var t ckptTimes
	res, err := r.finishCheckpoint(ctx, &t)
	if uerr := r.sql.unlockWriters(); err == nil {
		err = uerr
	}
	r.o.Log.Debug("checkpoint with the writer lock", "tries", r.sql.lockTries, "complete", res.complete(), "held", time.Since(start),
		"read", t.read, "copy", t.copy, "reread", t.reread, "copied", res.moved)
	return err
}

// ckptTimes is how long each part of a checkpoint under the writer lock
// took, for the debug log.
type ckptTimes struct{ read, copy, reread time.Duration }

// finishCheckpoint reads the rest of the log and copies it into the
// database file, then puts the read transaction on slot 0. The caller
// holds the writer lock.
func (r *Replicator) finishCheckpoint(ctx context.Context, t *ckptTimes) (ckptResult, error) {
	start := time.Now()
	if err := r.refresh(ctx); err != nil {
		return ckptResult{}, err
	}
	t.read = time.Since(start)
	// Once: if another checkpoint is running (the application's own,
	// begun after its last commit), the lock is let go rather than held
	// while waiting for it.
	res, err := r.runCheckpoint(ctx, "PASSIVE")
	t.copy = time.Since(start) - t.read
	if err != nil || !res.complete() {
		return res, err
	}
	err = r.refresh(ctx)
	t.reread = time.Since(start) - t.read - t.copy
	return res, err
}

// truncate shrinks a log file grown past truncateFrames, once every
// frame of the log is in the database file and the read transaction is
// on slot 0 (step 3 of maybeCheckpoint). TRUNCATE takes the writer lock
// itself, for at most the busy timeout: with nothing left to copy, it
// holds commits back only to truncate.
func (r *Replicator) truncate(ctx context.Context, fileFrames int64) error {
	if fileFrames < r.truncateFrames() {
		return nil
	}
	if _, err := r.runCheckpoint(ctx, "TRUNCATE"); err != nil {
		return err
	}
	return r.capturePass(ctx)
}

// passive runs a PASSIVE checkpoint, trying again for up to the busy
// timeout while another connection's checkpoint is running: PASSIVE never
// waits by itself, and an application whose log ferry keeps long runs its
// automatic checkpoint after nearly every commit (once ferry lets its
// checkpoint hold go for its own, or where it has none).
func (r *Replicator) passive(ctx context.Context) (ckptResult, error) {
	deadline := time.Now().Add(r.o.CheckpointBusyTimeout)
	for {
		res, err := r.runCheckpoint(ctx, "PASSIVE")
		if err != nil || !res.busy || res.log >= 0 || time.Now().After(deadline) {
			return res, err
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *Replicator) runCheckpoint(ctx context.Context, mode string) (ckptResult, error) {
	res, err := r.sql.checkpoint(ctx, mode)
	if err == nil {
		r.o.Log.Debug("checkpoint", "mode", mode, "busy", res.busy, "log", res.log, "copied", res.moved)
	}
	return res, err
}

// refresh hands the read transaction over to a new one whose read mark is
// the end of the log, reading the log in between.
func (r *Replicator) refresh(ctx context.Context) error {
	var read int64
	if r.posValid {
		read = r.pos.Frames()
	}
	err := r.sql.handover(ctx, func(*sql.Tx) error { return r.capturePass(ctx) })
	if err != nil {
		return fmt.Errorf("refresh the read transaction: %w", err)
	}
	// The new transaction's mark is where the log ended when it began:
	// at or past what the capture had read before the pass.
	r.sql.markAt = read
	r.protected = true
	return nil
}

// logFileFrames is the size of the log file in frames of the current page
// size.
func (r *Replicator) logFileFrames() int64 {
	if r.log == nil || r.pageSize == 0 {
		return 0
	}
	// The file the capture reads: a log replaced since is found by the
	// next pass.
	st, err := r.log.Stat()
	if err != nil {
		return 0
	}
	return (st.Size() - wal.HeaderSize) / (wal.FrameHeaderSize + int64(r.pageSize))
}

// restartFrames is the log length, in frames, past which a checkpoint
// that found the writer lock busy asks for it again the way SQLite's
// RESTART checkpoint does (see checkpointRestart).
func (r *Replicator) restartFrames() int64 { return 6 * int64(r.o.TruncatePages) }

// restartWait bounds the sleeps of SQLite's busy handler in a RESTART
// checkpoint of ferry's, in all (it sleeps 1 ms, 2 ms, then 5 ms, each
// cut to what is left): enough to find the writer lock free at the first
// or second try and then to wait twice for ferry's own reader, which
// moves on within a fraction of a millisecond. What comes after the lock
// is taken the application's commits wait for. restartWithin bounds how
// long ferry tries again while another connection's checkpoint (the
// application's automatic one, after nearly every commit of a long log,
// in the moment ferry's checkpoint hold is let go) keeps it from
// starting, which SQLite reports at once: long enough to outlast such a
// checkpoint's copy and syncs, which ferry waits out holding nothing the
// commits wait for. restartRetryPause is how often it tries.
const (
	restartWait       = 4 * time.Millisecond
	restartWithin     = 20 * time.Millisecond
	restartRetryPause = 100 * time.Microsecond
)

// refreshPause spaces the refreshes of the read transaction while a
// RESTART checkpoint runs: SQLite's busy handler, which the checkpoint
// waits in, sleeps a millisecond or more between its attempts.
const refreshPause = 200 * time.Microsecond

// checkpointRestart is step 2 of maybeCheckpoint when BEGIN IMMEDIATE
// keeps losing the writer lock to a writer at full speed: BEGIN IMMEDIATE
// takes a read snapshot before the lock and fails when a commit lands in
// between, while a RESTART checkpoint asks for the lock alone. It runs
// one on its own goroutine and, meanwhile, refreshes the read
// transaction again and again. Once the checkpoint holds the lock, no
// commit lands, and it waits for ferry's reader twice: to copy past its
// read mark, and, with the whole log copied, for every reader to leave
// slots 1..N. A refresh ends each wait: the first moves the read mark to
// the end of the log, the next, begun with every frame copied, puts the
// read transaction on slot 0. The log stays protected throughout: each
// refresh is a handover (see the package documentation).
//
// The commits wait while the checkpoint holds the lock: for the copy,
// and for a sleep of SQLite's busy handler per wait, 1 or 2 ms, within
// restartWait in all, about three times as long as a checkpoint under
// BEGIN IMMEDIATE holds them. That is why it is the way taken only once
// the log is long.
func (r *Replicator) checkpointRestart(ctx context.Context) error {
	type outcome struct {
		res ckptResult
		err error
	}
	done := make(chan outcome, 1)
	start := time.Now()
	go func() {
		res, err := r.sql.restart(ctx, restartWait, restartWithin)
		done <- outcome{res, err}
	}()
	// Under the lock the checkpoint may hold, a pass must not write a
	// change set: the commits would wait for it.
	r.sql.mayLock(true)
	defer r.sql.mayLock(false)
	var refreshes int
	var rerr error
	// The first refresh waits a pause too: the checkpoint lets ferry's
	// checkpoint hold go before it starts (see checkpointHold), and an
	// application checkpoint that takes the lock in that moment copies
	// up to ferry's read mark, in the application's commit; left where
	// it was, the mark leaves it little to copy.
	pause := time.NewTimer(refreshPause)
	defer pause.Stop()
	for {
		select {
		case out := <-done:
			r.o.Log.Debug("checkpoint RESTART", "busy", out.res.busy, "log", out.res.log, "copied", out.res.moved,
				"took", time.Since(start), "refreshes", refreshes)
			return errors.Join(rerr, out.err)
		case <-pause.C:
		}
		if rerr == nil {
			rerr = r.refresh(ctx)
			refreshes++
		}
		pause.Reset(refreshPause)
	}
}
