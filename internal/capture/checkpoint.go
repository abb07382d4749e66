package capture

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	"github.com/ferrydb/ferry/internal/wal"
)

// checkpointEvery spaces ferry's checkpoint attempts.
const checkpointEvery = time.Second

// maybeCheckpoint keeps the log short while ferry's read transaction holds
// SQLite's own checkpoints back. Each step keeps the log protected (see
// the package documentation), so none of them can lose a frame ferry has
// not read, and only FULL and TRUNCATE, run when the log is long, take the
// writer lock the application's commits wait for, each for at most
// CheckpointBusyTimeout:
//
//  1. Refresh the read transaction, so that its read mark is the end of
//     the log, and run a PASSIVE checkpoint: it copies every frame up to
//     that mark without taking any lock the application waits for.
//  2. Only when the log has grown past TruncatePages, which means PASSIVE
//     checkpoints keep losing the race with new commits, refresh again and
//     run a FULL checkpoint: holding the writer lock, it copies the rest.
//  3. Once every frame is in the database file, refresh once more: begun
//     now, before anything new commits, the read transaction sits on
//     SQLite's slot 0, which lets the application's next commit restart
//     the log from the top. When the log file itself is larger than
//     TruncatePages, a TRUNCATE checkpoint also shrinks it, with nothing
//     left to copy and under the same busy timeout.
//
// RESTART is never used: it waits for every reader, ferry's included, to
// finish, holding the writer lock all the while.
func (r *Replicator) maybeCheckpoint(ctx context.Context, now time.Time) error {
	if r.job != nil || r.broken != nil || !r.protected || !r.posValid || now.Sub(r.lastCkpt) < checkpointEvery {
		return nil
	}
	frames := r.pos.Frames()
	fileFrames := r.logFileFrames()
	if frames == 0 || (frames < int64(r.o.CheckpointPages) && fileFrames < int64(r.o.TruncatePages)) {
		return nil
	}
	r.lastCkpt = now
	return r.checkpoint(ctx, frames, fileFrames)
}

func (r *Replicator) checkpoint(ctx context.Context, frames, fileFrames int64) error {
	if err := r.refresh(ctx); err != nil {
		return err
	}
	res, err := r.runCheckpoint(ctx, "PASSIVE")
	if err != nil {
		return err
	}
	if !res.complete() && frames >= int64(r.o.TruncatePages) {
		if err := r.refresh(ctx); err != nil {
			return err
		}
		if res, err = r.runCheckpoint(ctx, "FULL"); err != nil {
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

func (r *Replicator) runCheckpoint(ctx context.Context, mode string) (ckptResult, error) {
	res, err := r.sql.checkpoint(ctx, mode)
	if err == nil {
		r.o.Log.Debug("checkpoint", "db", r.o.DBPath, "mode", mode, "busy", res.busy, "log", res.log, "copied", res.moved)
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
