package capture

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/uploader"
)

// shipDue reports whether the batch should become a change set now: at
// once for a Sync or a full batch, otherwise when the upload budget lets
// it (see budget.go): the first commit after a quiet period goes out at
// once (with the rest of its burst, for an application that writes in
// bursts), and under steady load one change set leaves per sync
// interval, on a fixed cadence. Behind a batch in flight (a full one)
// nothing is held.
func (r *Replicator) shipDue(now time.Time) bool {
	b := r.batch
	switch {
	case b.empty():
		return false
	case len(r.waiting) > 0 || b.full():
		return true
	case b.ahead != nil:
		return r.budget.ready(now)
	}
	return r.budget.shipNow(now, b.txns, b.opened, b.last)
}

// segmentName is the file, in the spool directory, that a change set is
// written to once, before it is spooled for each target.
const segmentName = "capture-segment"

// shipBatch spools the batch as one change set for every synced target.
// On success the batch is empty; on failure it is kept for the next try.
// A full spool drops the longest backlog (see dropBacklog) and tries again.
func (r *Replicator) shipBatch() {
	if !r.landFlight(true) || r.batch.empty() {
		return
	}
	start := time.Now()
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
	key := layout.ChangeSetKey(first)
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
			_, err := r.sp.EnqueueFile(segmentQueue(t.url), uploader.Job{Key: key, Pending: []string{t.url}, Last: last}, tmp, i == len(ts)-1)
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
	r.budget.charge(start)
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
	end := r.batchEnd()
	if err := r.batch.reset(); err != nil {
		r.fail(err)
	}
	r.durable = end
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
			end := r.progress.replicated(u)
			r.unsync(t, end+1, "the spool's disk was full")
			// With no backlog left, what the target holds is its chain.
			r.chainEnds(t, end)
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
	if t.marked != 0 {
		// The marker of an earlier break may have gone with the backlog:
		// the next snapshot spools it again.
		r.chainEnds(t, t.marked-1)
		t.marked = 0
	}
	end := r.progress.replicated(t.url)
	r.unsync(t, end+1, "the spool was full and the target's change sets were dropped")
	r.chainEnds(t, end)
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
			if r.progress.stopped(u) != nil {
				continue // refused because another writer took the key: see checkStopped
			}
			var job uploader.Job
			first, last := uint64(0), uint64(0)
			if err := json.Unmarshal(e.Payload, &job); err == nil {
				first, last, _ = layout.ParseAnySegmentKey(job.Key)
			}
			if first != 0 && last == 0 && job.Last == 0 {
				// A break marker: the chain had ended already, and the
				// snapshot carries the target on whether the marker is
				// stored or not; only a follower waiting there goes on
				// waiting, which the operator must hear of.
				r.progress.targetFailed(u, fmt.Errorf("the store refused break marker %s for good: %s", job.Key, e.Reason))
				continue
			}
			if first != 0 && first <= t.base {
				continue // a snapshot since carries the chain past it
			}
			cause := fmt.Sprintf("the store refused change set %s for good: %s", job.Key, e.Reason)
			r.progress.targetFailed(u, errors.New(cause))
			if t.synced || t.snapping {
				end := r.progress.replicated(u)
				r.unsync(t, end+1, cause)
				// The rest of its backlog chains onto the hole: of no use.
				if _, _, err := r.sp.DropQueue(segmentQueue(u)); err != nil {
					r.fail(fmt.Errorf("drop the change-set backlog of %s: %w", u, err))
				}
				r.chainEnds(t, end)
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
		Writer:   r.writer.id,
		Targets:  map[string]*savedTarget{},
		Gaps:     r.progress.gapList(),
		Quiet:    r.quiet,
		Idle:     r.saveIdle,
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
		BreakAfter:    t.breakAfter,
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

// chainEnds records that t's chain of change sets ends at txid end: no
// change set for end+1 will reach it, and a snapshot will carry it on
// (see markBreak). A target that never held a snapshot has no chain for a
// follower to wait on. The earliest end is kept: a second break before
// the snapshot does not move where the change sets stopped.
func (r *Replicator) chainEnds(t *target, end uint64) {
	if t.base == 0 || end < t.base {
		return
	}
	if t.breakAfter == 0 || end < t.breakAfter {
		t.breakAfter = end
	}
}

// markBreak spools, for t, the break marker saying that its chain of
// change sets ends at txid end (see segment.MarshalBreak): a follower
// waiting for end+1 learns with the same GET to go on from a newer
// snapshot. It is spooled when the snapshot that carries the target on
// starts, at txid snap: a snapshot at end itself carries the chain on
// with no break, and the change sets after it take end+1's key. It goes
// through the target's ordered queue, behind every change set spooled
// before the break, and like them is retried until the store takes it.
// A stopped target must not be written to.
func (r *Replicator) markBreak(t *target, snap uint64) {
	end := t.breakAfter
	t.breakAfter = 0
	if end == 0 || snap <= end || r.progress.stopped(t.url) != nil {
		return
	}
	key := layout.ChangeSetKey(end + 1)
	marker := segment.MarshalBreak(end + 1)
	_, err := r.sp.Enqueue(segmentQueue(t.url), uploader.Job{Key: key, Pending: []string{t.url}}, func(w io.Writer) error {
		_, err := w.Write(marker)
		return err
	})
	if err != nil {
		// The snapshot still carries the target on; only a follower
		// waiting for end+1 goes on waiting.
		r.fail(fmt.Errorf("spool the break marker %s for %s: %w", key, t.url, err))
		return
	}
	t.marked = end + 1
	r.o.Log.Info("break marker spooled", "target", t.url, "key", key, "chain_ends_at", end)
}

// checkStopped answers targets that stopped for good since the last
// step: their backlog goes, since nothing more may be written there, and
// the operator hears of it once (progress.stop logged the cause).
func (r *Replicator) checkStopped() {
	for _, u := range r.urls {
		t := r.targets[u]
		if t.stopHandled || r.progress.stopped(u) == nil {
			continue
		}
		t.stopHandled = true
		r.progress.setSynced(u, false)
		if _, _, err := r.sp.DropQueue(segmentQueue(u)); err != nil {
			r.fail(fmt.Errorf("drop the change-set backlog of stopped target %s: %w", u, err))
		}
		if err := r.save(); err != nil {
			r.fail(err)
		}
	}
}
