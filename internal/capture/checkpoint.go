package capture

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	"github.com/ferrydb/ferry/internal/wal"
)

// checkpointEvery spaces ferry's checkpoint attempts, and
// longLogCheckpointEvery those made once the log is past TruncatePages,
// which under steady writes grows by the same length again this often.
const (
	checkpointEvery        = time.Second
	longLogCheckpointEvery = 100 * time.Millisecond
)

// lockedTail is the most frames a checkpoint under the writer lock may
// have left to read, and half the most it may have left to copy: 4 MiB of
// 4 KiB pages, a few milliseconds of the application's commits held back.
const lockedTail = 1024

// maybeCheckpoint keeps the log short while ferry's read transaction holds
// SQLite's own checkpoints back. Each step keeps the log protected (see
// the package documentation), so none of them can lose a frame ferry has
// not read:
//
//  1. Refresh the read transaction, so that its read mark is the end of
//     the log, and run a PASSIVE checkpoint: it copies every frame up to
//     that mark without taking any lock the application waits for.
//  2. Only when the log has grown past TruncatePages, which means PASSIVE
//     checkpoints keep losing the race with new commits, take SQLite's
//     writer lock for at most CheckpointBusyTimeout and, while it holds
//     commits back, refresh and run PASSIVE again: with no commit landing
//     in between, this one copies the few frames left, and a last refresh
//     puts the read transaction on SQLite's slot 0 (step 3) before the
//     lock is let go. The application's commits wait only for that short
//     copy, never for a reader.
//  3. Once every frame is in the database file, refresh once more: begun
//     now, before anything new commits, the read transaction sits on
//     SQLite's slot 0, which lets the application's next commit restart
//     the log from the top. When the log file itself is larger than
//     TruncatePages, a TRUNCATE checkpoint also shrinks it, with nothing
//     left to copy and under the same busy timeout.
//
// FULL and RESTART are never used: they hold the writer lock while they
// wait for readers, ferry's own included, to move on, which under steady
// writes they never do in time.
func (r *Replicator) maybeCheckpoint(ctx context.Context, now time.Time) error {
	if r.job != nil || r.broken != nil || !r.protected || !r.posValid {
		return nil
	}
	frames := r.pos.Frames()
	fileFrames := r.logFileFrames()
	if frames == 0 || (frames < int64(r.o.CheckpointPages) && fileFrames < int64(r.o.TruncatePages)) {
		return nil
	}
	every := checkpointEvery
	if frames >= int64(r.o.TruncatePages) {
		every = longLogCheckpointEvery
	}
	if now.Sub(r.lastCkpt) < every {
		return nil
	}
	r.lastCkpt = now
	return r.checkpoint(ctx, frames, fileFrames)
}

func (r *Replicator) checkpoint(ctx context.Context, frames, fileFrames int64) error {
	if err := r.refresh(ctx); err != nil {
		return err
	}
	res, err := r.passive(ctx)
	if err != nil {
		return err
	}
	if !res.complete() && frames >= int64(r.o.TruncatePages) {
		if res, err = r.checkpointLocked(ctx); err != nil {
			return err
		}
	}
	if !res.complete() {
		return nil
	}
	if err := r.refresh(ctx); err != nil {
		return err
	}
	if !r.posValid || r.pos.Frames() != res.log {
		// A commit came in since the checkpoint; the next attempt will
		// copy it.
		return nil
	}
	if fileFrames >= int64(r.o.TruncatePages) {
		if _, err := r.runCheckpoint(ctx, "TRUNCATE"); err != nil {
			return err
		}
		return r.capturePass(ctx)
	}
	return nil
}

// checkpointLocked is step 2 of maybeCheckpoint: a PASSIVE checkpoint
// with the application's commits held back, so that it finishes.
func (r *Replicator) checkpointLocked(ctx context.Context) (ckptResult, error) {
	// The commits wait for as long as the lock is held, and the copy that
	// holds it is as long as the frames neither read nor copied yet: try
	// only when ferry has nearly caught up with the application. A PASSIVE
	// checkpoint right after a refresh says both, and copies what it can.
	// (SQLite's index says the same, but reading it would mean opening and
	// closing the -shm file, and closing any descriptor of a file drops
	// every POSIX lock the process holds on it: ferry's read marks, and an
	// embedding application's own.)
	if err := r.refresh(ctx); err != nil {
		return ckptResult{}, err
	}
	res, err := r.passive(ctx)
	if err != nil {
		return res, err
	}
	if res.busy || res.log-r.pos.Frames() > lockedTail || res.log-res.moved > 2*lockedTail {
		r.o.Log.Debug("checkpoint with the writer lock skipped: too much left",
			"busy", res.busy, "unread", res.log-r.pos.Frames(), "uncopied", res.log-res.moved)
		return ckptResult{busy: true}, nil
	}
	locked, err := r.sql.lockWriters(ctx)
	if err != nil || !locked {
		return ckptResult{busy: true}, err
	}
	start := time.Now()
	res, err = r.finishCheckpoint(ctx)
	if uerr := r.sql.unlockWriters(); err == nil {
		err = uerr
	}
	r.o.Log.Debug("checkpoint with the writer lock", "complete", res.complete(), "held", time.Since(start))
	return res, err
}

// finishCheckpoint reads the rest of the log and copies it into the
// database file, then puts the read transaction on slot 0. The caller
// holds the writer lock.
func (r *Replicator) finishCheckpoint(ctx context.Context) (ckptResult, error) {
	if err := r.refresh(ctx); err != nil {
		return ckptResult{}, err
	}
	res, err := r.passive(ctx)
	if err != nil || !res.complete() {
		return res, err
	}
	return res, r.refresh(ctx)
}

// passive runs a PASSIVE checkpoint, trying again for up to the busy
// timeout while another connection's checkpoint is running: PASSIVE never
// waits by itself, and an application whose log ferry keeps long runs its
// automatic checkpoint after nearly every commit.
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
	err := r.sql.handover(ctx, func(*sql.Tx) error { return r.capturePass(ctx) })
	if err != nil {
		return fmt.Errorf("refresh the read transaction: %w", err)
	}
	r.protected = true
	return nil
}

// logFileFrames is the size of the log file in frames of the current page
// size.
func (r *Replicator) logFileFrames() int64 {
	st, err := os.Stat(r.walPath)
	if err != nil || r.pageSize == 0 {
		return 0
	}
	return (st.Size() - wal.HeaderSize) / (wal.FrameHeaderSize + int64(r.pageSize))
}
