package capture

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/uploader"
)

// shipDue reports whether the batch should become a change set now: the
// first commit after a quiet period goes out at once, and under steady
// load at most one change set leaves per sync interval.
func (r *Replicator) shipDue(now time.Time) bool {
	return !r.batch.empty() && (len(r.waiting) > 0 || r.batch.full() || now.Sub(r.lastShip) >= r.o.SyncInterval)
}

// segmentName is the file, in the spool directory, that a change set is
// written to once, before it is spooled for each target.
const segmentName = "capture-segment"

// shipBatch spools the batch as one change set for every synced target.
// On success the batch is empty; on failure it is kept for the next try.
// A full spool drops the longest backlog (see dropBacklog) and tries again.
func (r *Replicator) shipBatch() {
	if r.batch.empty() {
		return
	}
	var ts []*target
	for _, u := range r.urls {
		if t := r.targets[u]; t.synced {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		// Every target waits for a snapshot, which will carry these
		// transactions; nobody could use the change set.
		r.clearBatch()
		return
	}
	first, last := r.batch.first, r.batch.last
	if err := r.reserve(last); err != nil {
		r.fail(err)
		return
	}
	key := layout.SegmentKey(first, last)
	tmp := filepath.Join(r.o.SpoolDir, segmentName)
	defer os.Remove(tmp)
	if err := r.writeSegmentFile(tmp); err != nil {
		r.fail(fmt.Errorf("write change set %s: %w", key, err))
		if errors.Is(err, syscall.ENOSPC) {
			r.spoolDiskFull(err)
		}
		return
	}
	for i, t := range ts {
		for t.synced {
			// The last target takes the file itself; the others copies.
			_, err := r.sp.EnqueueFile(segmentQueue(t.url), uploader.Job{Key: key, Pending: []string{t.url}}, tmp, i == len(ts)-1)
			if err == nil {
				break
			}
			// A disk without room is a full spool too, only smaller than
			// its bound.
			if !errors.Is(err, spool.ErrFull) && !errors.Is(err, syscall.ENOSPC) {
				// Targets spooled already get the change set again on the
				// next try; a duplicate is harmless.
				r.fail(fmt.Errorf("spool change set %s for %s: %w", key, t.url, err))
				return
			}
			victim := r.laggard()
			if victim == nil {
				// No backlog to drop: the change set alone does not fit.
				victim = t
			}
			r.dropBacklog(victim, err)
		}
	}
	r.clearBatch()
}

func (r *Replicator) writeSegmentFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = r.batch.writeSegment(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// clearBatch empties the batch after its transactions went to the spool
// or became moot.
func (r *Replicator) clearBatch() {
	if err := r.batch.reset(); err != nil {
		r.fail(err)
	}
	r.durable = r.current()
	r.lastShip = time.Now()
}

// dropBatch gives up a batch that cannot be spooled, recording the gap.
func (r *Replicator) dropBatch(reason string) {
	first, last := r.batch.first, r.batch.last
	for _, t := range r.targets {
		if t.synced {
			r.gap(t.url, first, last, reason)
		}
	}
	r.clearBatch()
}

// spoolDiskFull answers a spool whose disk has no room left: the
// longest backlog goes first, as for a full spool; with none left, the
// batch itself cannot be written, so every target gives up its change sets
// and waits for a snapshot, which goes to the stores without the spool.
// Until then the capture only counts transactions (see addTxn), so that it
// keeps up with the log and the application's log stays bounded.
func (r *Replicator) spoolDiskFull(cause error) {
	if victim := r.laggard(); victim != nil {
		r.dropBacklog(victim, cause)
		return
	}
	for _, u := range r.urls {
		if t := r.targets[u]; t.synced {
			r.o.Log.Error("spool disk full: a snapshot will re-establish the target's chain", "target", u, "cause", cause)
			r.unsync(t, r.progress.replicated(u)+1, "the spool's disk was full")
			t.nextTry = time.Time{}
		}
	}
	r.clearBatch()
	if err := r.save(); err != nil {
		r.fail(err)
	}
}

// anySynced reports whether change sets reach some target.
func (r *Replicator) anySynced() bool {
	for _, t := range r.targets {
		if t.synced {
			return true
		}
	}
	return false
}

// laggard returns the target with the longest backlog in the spool, or
// nil when no target has one.
func (r *Replicator) laggard() *target {
	var worst *target
	most := 0
	for _, u := range r.urls {
		if n := r.sp.Len(segmentQueue(u)); n > most {
			worst, most = r.targets[u], n
		}
	}
	return worst
}

// dropBacklog answers a full spool. The backlog of change sets of one
// target, the one furthest behind, is dropped, so that the application's
// log and ferry's disk use stay bounded and the other targets go on. The
// target then waits for a snapshot, taken as soon as its store answers,
// and the txids in between are recorded as a gap.
func (r *Replicator) dropBacklog(t *target, cause error) {
	n, bytes, err := r.sp.DropQueue(segmentQueue(t.url))
	if err != nil {
		r.fail(fmt.Errorf("drop the change-set backlog of %s: %w", t.url, err))
	}
	r.o.Log.Error("spool full: dropped a target's change-set backlog; a snapshot will re-establish its chain",
		"target", t.url, "entries", n, "bytes", bytes, "cause", cause)
	r.unsync(t, r.progress.replicated(t.url)+1, "the spool was full and the target's change sets were dropped")
	t.nextTry = time.Time{}
	if err := r.save(); err != nil {
		r.fail(err)
	}
}

// checkFailed looks for change sets the uploaders gave up on for good
// (the store refused them for a reason retrying cannot fix). A target
// missing one can restore nothing past it, so its chain ends there: the
// txids from the hole on become a gap, and a snapshot starts the chain
// again. The entry stays in the spool's failed queue for the operator
// (`ferry spool fsck` lists it); a restart finds it again and ignores it
// once a snapshot at or past its first txid reached the target.
func (r *Replicator) checkFailed() {
	failed, err := r.sp.Failed()
	if err != nil {
		r.fail(fmt.Errorf("list the spool's failed change sets: %w", err))
		return
	}
	for _, e := range failed {
		if r.failedSeen[e.ID] {
			continue
		}
		r.failedSeen[e.ID] = true
		for _, u := range r.urls {
			t := r.targets[u]
			if e.From != segmentQueue(u) {
				continue
			}
			var job uploader.Job
			first := uint64(0)
			if err := json.Unmarshal(e.Payload, &job); err == nil {
				first, _, _ = layout.ParseSegmentKey(job.Key)
			}
			if first != 0 && first <= t.base {
				continue // a snapshot since carries the chain past it
			}
			cause := fmt.Sprintf("the store refused change set %s for good: %s", job.Key, e.Reason)
			r.progress.targetFailed(u, errors.New(cause))
			if t.synced || t.snapping {
				r.unsync(t, r.progress.replicated(u)+1, cause)
				// The rest of its backlog chains onto the hole: of no use.
				if _, _, err := r.sp.DropQueue(segmentQueue(u)); err != nil {
					r.fail(fmt.Errorf("drop the change-set backlog of %s: %w", u, err))
				}
				t.nextTry = time.Time{}
				if err := r.save(); err != nil {
					r.fail(err)
				}
			}
		}
	}
}

// gap records that url cannot restore txids first..last.
func (r *Replicator) gap(url string, first, last uint64, reason string) {
	if first == 0 || last < first {
		return
	}
	g := Gap{Target: url, First: first, Last: last, Reason: reason, Time: time.Now().UTC()}
	r.o.Log.Warn("gap in point-in-time coverage", "target", url, "first_txid", first, "last_txid", last, "reason", reason)
	r.progress.addGap(g)
}

// fail records an error of the capture for Status and the log.
func (r *Replicator) fail(err error) {
	if r.progress.captureFailed(err) {
		r.o.Log.Warn("capture failed; retrying", "err", err)
	}
}

// save writes the capture state.
func (r *Replicator) save() error {
	st := &savedState{
		DB:       r.o.DBPath,
		TXID:     r.durable.txid,
		Time:     r.durable.at,
		PageSize: r.durable.pageSize,
		DBSize:   r.durable.dbSize,
		Reserved: r.reserved,
		Targets:  map[string]*savedTarget{},
		Gaps:     r.progress.gapList(),
	}
	if r.durable.posValid {
		pos := r.durable.pos
		st.Pos = &pos
	}
	for u, t := range r.targets {
		st.Targets[u] = t.saved(r.progress)
	}
	return saveState(r.o.SpoolDir, st)
}

// saved returns what of t survives a restart.
func (t *target) saved(p *progress) *savedTarget {
	p.mu.Lock()
	sv := &savedTarget{
		Snapshot:     t.base,
		SnapshotTime: t.baseTime,
		// A target whose chain a snapshot in flight was to start again
		// has no chain if that snapshot never lands.
		Synced:        t.synced && !(t.snapping && t.resyncing),
		Replicated:    t.reached(),
		UnsyncedFrom:  t.unsyncedFrom,
		UnsyncedCause: t.unsyncedCause,
		Full:          t.full,
	}
	if r := t.reached(); r < p.local {
		sv.WaitingSince, _ = p.marks.committedAt(r + 1)
	}
	if t.base < t.holdAfter {
		sv.HoldAfter = t.holdAfter
	}
	p.mu.Unlock()
	// A snapshot in flight holds the chunks dirtied before it began; if
	// it never completes, the next one needs them.
	sv.Full = sv.Full || (t.snapping && t.jobFull)
	for i := range t.dirty {
		sv.Dirty = append(sv.Dirty, i)
	}
	if t.snapping {
		for i := range t.jobDirty {
			if !t.dirty.Has(i) {
				sv.Dirty = append(sv.Dirty, i)
			}
		}
	}
	slices.Sort(sv.Dirty)
	return sv
}

// reserve makes sure txid is at or below the saved Reserved before it
// reaches the spool or a store.
func (r *Replicator) reserve(txid uint64) error {
	if txid <= r.reserved {
		return nil
	}
	old := r.reserved
	r.reserved = txid
	if err := r.save(); err != nil {
		r.reserved = old
		return err
	}
	return nil
}
