package capture

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// snapJob is a snapshot in flight: one image of the database at one txid,
// written to each target that needs it. It runs beside the capture, which
// keeps reading the log and spooling change sets; the capture only holds
// its read transaction still (no checkpoint of its own, no handover) until
// the job ends, because that transaction is what keeps the image's
// database file pages from changing.
type snapJob struct {
	txid uint64
	at   time.Time
	img  *image
	// addresser names the chunks; the same for every target, as the
	// keys are the database's.
	addresser snapshot.Addresser
	works     []*snapWork
	cancel    context.CancelFunc
	done      chan struct{}
}

// snapWork is one target's part of a job. The job's goroutine touches only
// this, never the capture's target.
type snapWork struct {
	url   string
	store objstore.Store
	base  uint64
	prev  *snapshot.Manifest
	dirty snapshot.ChunkSet
	full  bool
	// observe hears every store call, for the target's state.
	observe objstore.AttemptObserver
	// writer names the replicator in the manifest it stores.
	writer writerID

	m     snapshot.Manifest
	stats snapshot.Stats
	err   error
}

// snapshotParallelism is how many chunks a snapshot reads and uploads at
// once, per target.
const snapshotParallelism = 4

// due returns the targets that need a snapshot now: those that wait for
// one to receive change sets again, and those whose newest snapshot is
// older than the snapshot interval while the database changed since. An
// idle database is never snapshotted again.
func (r *Replicator) due(now time.Time) []*target {
	var out []*target
	for _, u := range r.urls {
		t := r.targets[u]
		switch {
		case r.progress.stopped(u) != nil:
		case now.Before(t.nextTry):
		case !t.synced || t.base == 0 || t.forced:
			out = append(out, t)
		case r.txid > t.base && now.Sub(t.baseTime) >= r.o.SnapshotInterval:
			out = append(out, t)
		}
	}
	return out
}

// startSnapshots starts a job for every due target, unless one is running.
func (r *Replicator) startSnapshots(ctx context.Context, now time.Time) {
	if r.job != nil || r.broken != nil || !r.protected || r.sql == nil || !r.sql.held() || r.pageSize == 0 || r.dbSize == 0 {
		return
	}
	ts := r.due(now)
	if len(ts) == 0 {
		return
	}
	if len(r.overlay) > 0 && r.gen == nil {
		return // not yet a reader to read the overlay with; next pass
	}
	if err := r.reserve(r.txid); err != nil {
		r.fail(err)
		return
	}
	img, err := newImage(ctx, r.o.DBPath, r.dbInfo, r.sql.tx(), r.gen, maps.Clone(r.overlay), r.pageSize, r.dbSize)
	if err != nil {
		if ctx.Err() == nil { // stopping is no failure
			r.fail(err)
		}
		return
	}
	jctx, cancel := context.WithCancel(ctx)
	job := &snapJob{txid: r.txid, at: r.txTime, img: img, addresser: r.o.Addresser, cancel: cancel, done: make(chan struct{})}
	for _, t := range ts {
		url := t.url
		w := &snapWork{url: url, store: t.store, base: t.base, dirty: t.dirty, full: t.full || t.base == 0,
			observe: func(_ string, err error) { r.progress.attempt(url, err) }, writer: r.writer}
		if !w.full {
			w.prev = t.prev
		}
		t.jobDirty, t.jobFull, t.jobForced = t.dirty, w.full, t.forced
		t.forced = false
		t.dirty, t.full = snapshot.ChunkSet{}, false
		t.snapping, t.resyncing = true, !t.synced
		if !t.synced {
			// A follower waiting at the end of the old chain learns of
			// the break ahead of the change sets that follow.
			r.markBreak(t, job.txid)
			// Change sets spooled from now on carry on from this
			// snapshot's txid, so they must reach the target, once the
			// snapshot is there.
			r.progress.resync(t.url, job.txid)
		}
		job.works = append(job.works, w)
	}
	r.job = job
	r.o.Log.Debug("snapshot started", "txid", job.txid, "targets", len(job.works), "pages", job.img.pages)
	go job.run(jctx)
}

func (j *snapJob) run(ctx context.Context) {
	defer close(j.done)
	defer j.img.close()
	for _, w := range j.works {
		ctx := objstore.WithAttemptObserver(ctx, w.observe)
		if !w.full && (w.prev == nil || w.prev.TXID != w.base) {
			m, err := snapshot.Load(ctx, w.store, w.base)
			if err == nil {
				w.prev = &m
			} else {
				// Without the previous manifest every chunk is reread;
				// the result is the same, only slower.
				w.prev = nil
			}
		}
		opts := snapshot.Options{Parallelism: snapshotParallelism, Addresser: j.addresser, Metadata: w.writer.metadata()}
		if w.prev != nil {
			opts.Previous, opts.Dirty = w.prev, w.dirty
		}
		w.m, w.stats, w.err = snapshot.Write(ctx, w.store, j.img, j.img.pageSize, j.img.pages, j.txid, j.at, opts)
		if w.err != nil && objstore.IsPreconditionFailed(w.err) && ctx.Err() == nil {
			w.m, w.err = adopt(ctx, w, j, w.err)
		}
	}
}

// adopt accepts a manifest that already exists at the job's txid when it
// describes the same database image. That happens after a crash between
// storing a manifest and saving the state: the txid is captured again
// with another commit time, and the manifest, written create-only, cannot
// be replaced. Another writer's manifest with another image is a
// conflictError, which stops the target.
func adopt(ctx context.Context, w *snapWork, j *snapJob, cause error) (snapshot.Manifest, error) {
	store := w.store
	have, err := snapshot.Load(ctx, store, j.txid)
	if err != nil {
		return snapshot.Manifest{}, cause
	}
	_, sum, err := snapshot.HashDB(j.img, j.img.pageSize, j.img.pages, j.addresser)
	if err != nil {
		return snapshot.Manifest{}, err
	}
	if have.PageSize != j.img.pageSize || have.PageCount != j.img.pages || have.DBHash != sum {
		key := layout.ManifestKey(j.txid)
		info, err := store.Head(ctx, key)
		if err != nil {
			return snapshot.Manifest{}, fmt.Errorf("%w; its database differs from this one at the same txid, and reading who wrote it failed: %v", cause, err)
		}
		if w.writer.ours(info.Metadata) {
			return snapshot.Manifest{}, fmt.Errorf("%w; its database differs from the one this replicator captured again at the same txid", cause)
		}
		return snapshot.Manifest{}, &conflictError{url: w.url, key: key, other: describeWriter(info.Metadata)}
	}
	return have, nil
}

// finishSnapshots takes in the results of the job that ended.
func (r *Replicator) finishSnapshots() {
	job := r.job
	r.job = nil
	now := time.Now()
	if n := job.img.fromFileAfterRestart.Load(); n > 0 {
		r.o.Log.Debug("the log restarted under the snapshot; pages read from the database file", "txid", job.txid, "pages", n)
	}
	for _, w := range job.works {
		t := r.targets[w.url]
		t.snapping = false
		if w.err == nil {
			// A target whose backlog was dropped while the snapshot ran
			// needs another one; its gap is recorded then.
			if t.synced && t.unsyncedFrom != 0 && job.txid > t.unsyncedFrom {
				r.gap(t.url, t.unsyncedFrom, job.txid-1, t.unsyncedCause)
			}
			t.prev = &w.m
			t.failures, t.nextTry = 0, time.Time{}
			// Logged first: snapshotDone wakes Sync, whose callers may
			// look for this line.
			r.o.Log.Info("snapshot stored", "target", t.url, "txid", job.txid,
				"chunks", w.stats.Chunks, "reread", w.stats.ChunksReread, "uploaded", w.stats.ChunksUploaded, "repacked", w.stats.ChunksRepacked, "packs", w.stats.Packs, "bytes", w.stats.BytesUploaded)
			r.progress.snapshotDone(t.url, job.txid, now)
		} else {
			for i := range t.jobDirty {
				t.dirty.Add(i)
			}
			t.full = t.full || t.jobFull
			t.forced = t.forced || t.jobForced
			if t.resyncing {
				r.progress.setSynced(t.url, false)
			}
			var cerr *conflictError
			switch {
			case errors.Is(w.err, context.Canceled):
				t.nextTry = time.Time{}
			case errors.As(w.err, &cerr):
				r.progress.stop(t.url, cerr)
			default:
				t.failures++
				t.nextTry = now.Add(retryDelay(t.failures))
				r.progress.targetFailed(t.url, w.err)
				r.o.Log.Warn("snapshot failed; will retry", "target", t.url, "txid", job.txid, "retry_in", t.nextTry.Sub(now).Round(time.Millisecond), "err", w.err)
			}
		}
		t.jobDirty, t.jobFull, t.resyncing = nil, false, false
	}
	if err := r.save(); err != nil {
		r.fail(err)
	}
}

// stopSnapshots cancels the job in flight, if any, and takes in its end.
func (r *Replicator) stopSnapshots() {
	if r.job == nil {
		return
	}
	r.job.cancel()
	<-r.job.done
	r.finishSnapshots()
}

// retryDelay spaces the attempts of a snapshot that keeps failing: 1s
// doubling to a minute.
func retryDelay(failures int) time.Duration {
	return min(time.Second<<min(failures-1, 6), time.Minute)
}
