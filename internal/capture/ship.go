package capture

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/uploader"
)

// shipDue reports whether the batch should become a change set now: the
// first commit after a quiet period goes out at once, and under steady
// load at most one change set leaves per sync interval.
func (r *Replicator) shipDue(now time.Time) bool {
	return !r.batch.empty() && (len(r.waiting) > 0 || r.batch.full() || now.Sub(r.lastShip) >= r.o.SyncInterval)
}

// shipBatch spools the batch as one change set for every synced target.
// On success the batch is empty; on failure it is kept for the next try,
// unless the spool was full (see dropBacklog).
func (r *Replicator) shipBatch() {
	if r.batch.empty() {
		return
	}
	var urls []string
	for _, u := range r.urls {
		if r.targets[u].synced {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
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
	key := segment.Key(first, last)
	r.progress.expect(key, urls)
	_, err := r.sp.Enqueue(segmentsQueue, uploader.Job{Key: key, Pending: urls}, r.batch.writeSegment)
	switch {
	case err == nil:
		r.clearBatch()
	case errors.Is(err, spool.ErrFull):
		r.dropBacklog(err)
	default:
		r.fail(fmt.Errorf("spool change set %s: %w", key, err))
	}
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

// dropBacklog answers a full spool. The backlog of change sets is dropped,
// so that the application's log and ferry's disk use stay bounded; every
// target then waits for a snapshot, taken as soon as a store answers, and
// the txids in between are recorded as a gap.
func (r *Replicator) dropBacklog(cause error) {
	n, bytes, err := r.sp.DropQueue(segmentsQueue)
	if err != nil {
		r.fail(fmt.Errorf("drop the change-set backlog: %w", err))
	}
	r.progress.forgetKeys()
	r.o.Log.Error("spool full: dropped the change-set backlog; a snapshot will re-establish the chain",
		"db", r.o.DBPath, "entries", n, "bytes", bytes, "cause", cause)
	for _, t := range r.targets {
		r.unsync(t, r.progress.replicated(t.url)+1, "the spool was full and its change sets were dropped")
		t.nextTry = time.Time{}
	}
	r.clearBatch()
	if err := r.save(); err != nil {
		r.fail(err)
	}
}

// gap records that url cannot restore txids first..last.
func (r *Replicator) gap(url string, first, last uint64, reason string) {
	if first == 0 || last < first {
		return
	}
	g := Gap{Target: url, First: first, Last: last, Reason: reason, Time: time.Now().UTC()}
	r.o.Log.Warn("gap in point-in-time coverage", "db", r.o.DBPath, "target", url, "first_txid", first, "last_txid", last, "reason", reason)
	r.progress.addGap(g)
}

// fail records an error of the capture for Status and the log.
func (r *Replicator) fail(err error) {
	r.o.Log.Warn("capture", "db", r.o.DBPath, "err", err)
	r.progress.fail("", err)
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
		sv := &savedTarget{
			Snapshot:      t.base,
			SnapshotTime:  t.baseTime,
			Synced:        t.synced && !(t.snapping && t.resyncing),
			Replicated:    r.progress.replicated(u),
			UnsyncedFrom:  t.unsyncedFrom,
			UnsyncedCause: t.unsyncedCause,
			Full:          t.full,
		}
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
		st.Targets[u] = sv
	}
	return saveState(r.o.SpoolDir, st)
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
