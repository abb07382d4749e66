package capture

import (
	"log/slog"
	"slices"
	"time"
)

// targetState is what one target holds and how it is faring: the one
// place that answers, for Status, Sync and the log, how far the target
// restores, what it lacks and since when, and whether its store answers.
// It lives inside progress and is guarded by progress.mu; the capture
// loop's target keeps only the bookkeeping of the snapshots it runs.
type targetState struct {
	url string

	// Only the capture loop changes the fields from here to ranges (under
	// progress.mu, through progress), so it may read them without the
	// lock; everybody else holds it.
	//
	// base is the newest snapshot completed there, baseTime when ferry
	// stored it.
	base     uint64
	baseTime time.Time
	// synced says that change sets reach the target from base on. A
	// target that is not synced is left out of new change sets until a
	// snapshot starts for it.
	synced bool
	// unsyncedFrom, when not zero, is the first txid the target misses
	// while it waits for a snapshot: the start of a gap that the next
	// snapshot stored will end, shown as open until then; unsyncedCause
	// says why it began.
	unsyncedFrom  uint64
	unsyncedCause string
	// holdAfter, when not zero, is the txid of a snapshot that starts the
	// target's chain again: change sets after it wait until a snapshot at
	// or past it is stored, so that the target never holds change sets
	// that no snapshot leads to (which a restore or verify would rightly
	// call damage).
	holdAfter uint64

	ranges []txRange // change sets confirmed above base, merged and sorted

	// stopped, when set, is why the target stopped replicating for good:
	// another writer stores change sets or manifests under its prefix.
	// Nothing more is written to it until ferry restarts. The uploader
	// sets it, so the capture loop too reads it under the lock (see
	// progress.stopped).
	stopped string

	// lastErr is the newest failure, kept after recovery for the operator;
	// failingSince is when the current run of failures began, zero while
	// the store answers.
	lastErr      string
	lastErrAt    time.Time
	failingSince time.Time
	// catchingUp is set when a failing target answers again, until it
	// restores everything captured by then (recoverAt): the moment worth
	// an INFO line.
	catchingUp bool
	recoverAt  uint64
	downFor    time.Duration
}

// chainable reports whether a change set starting at first may go to the
// target now (see holdAfter).
func (t *targetState) chainable(first uint64) bool {
	// A stopped target waits for nothing: its uploader must learn that it
	// stopped.
	return t.stopped != "" || t.holdAfter == 0 || first <= t.holdAfter || t.base >= t.holdAfter
}

// reached returns how far t restores.
func (t *targetState) reached() uint64 {
	if t.base == 0 {
		return 0
	}
	x := t.base
	for _, r := range t.ranges {
		if r.first > x+1 {
			break
		}
		x = max(x, r.last)
	}
	return x
}

// add records that t holds the change sets for r.
func (t *targetState) add(r txRange) {
	if r.last <= t.base {
		return
	}
	t.ranges = append(t.ranges, r)
	slices.SortFunc(t.ranges, func(a, b txRange) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	merged := t.ranges[:0]
	for _, r := range t.ranges {
		if n := len(merged); n > 0 && r.first <= merged[n-1].last+1 {
			merged[n-1].last = max(merged[n-1].last, r.last)
			continue
		}
		merged = append(merged, r)
	}
	t.ranges = merged
}

// prune forgets ranges the base covers.
func (t *targetState) prune() {
	t.ranges = slices.DeleteFunc(t.ranges, func(r txRange) bool { return r.last <= t.base })
}

// answered records that the target's store answered a call. The first
// answer after a run of failures is logged with how long the run lasted
// and how far behind the target is.
func (t *targetState) answered(log *slog.Logger, local uint64, now time.Time) {
	if t.failingSince.IsZero() {
		return
	}
	t.downFor = now.Sub(t.failingSince)
	t.failingSince = time.Time{}
	behind := local - min(local, t.reached())
	log.Info("target answers again", "target", t.url, "failed_for", t.downFor.Round(time.Millisecond),
		"replicated_txid", t.reached(), "txids_to_catch_up", behind)
	t.catchingUp, t.recoverAt = behind > 0, local
}

// failed records a failure of the target's store or of what ferry sent
// it. The first of a run is logged at WARN with its cause; the rest only
// update the last error, so that an outage of an hour is one line, not
// thousands.
func (t *targetState) failed(log *slog.Logger, err error, now time.Time) {
	t.lastErr, t.lastErrAt = err.Error(), now
	if !t.failingSince.IsZero() {
		return
	}
	t.failingSince = now
	t.catchingUp = false
	log.Warn("target failing; change sets wait in the spool and are retried", "target", t.url,
		"replicated_txid", t.reached(), "err", err)
}

// progressed is called after t may have reached further; it logs the end
// of a catch-up.
func (t *targetState) progressed(log *slog.Logger) {
	if t.catchingUp && t.reached() >= t.recoverAt {
		t.catchingUp = false
		log.Info("target caught up", "target", t.url, "replicated_txid", t.reached(), "after_failing_for", t.downFor.Round(time.Millisecond))
	}
}

// status reports t, with its lag worked out from the commit marks.
func (t *targetState) status(local uint64, marks *commitMarks, now time.Time) TargetStatus {
	st := TargetStatus{
		URL: t.url, Replicated: t.reached(), Snapshot: t.base, Synced: t.synced,
		LastError: t.lastErr, LastErrorTime: t.lastErrAt, FailingSince: t.failingSince,
		Stopped: t.stopped != "",
	}
	if t.stopped != "" {
		// Whatever failed since, the stop is what the operator must fix.
		st.LastError = t.stopped
	}
	if st.Replicated < local {
		if at, ok := marks.committedAt(st.Replicated + 1); ok {
			st.Lag = max(0, now.Sub(at))
			st.WaitingSince = at
		}
	}
	st.LagSeconds = st.Lag.Seconds()
	return st
}

// commitMarks remembers when txids were committed, for as long as some
// target lacks them: the lag of a target is the age of the oldest commit
// it does not hold, which needs that commit's time. One mark stands for
// every txid from its own up to the next mark's; the time kept is the
// earliest of them, so a lag is never understated, and marks closer than
// markSpacing are merged, so that an outage under heavy writes costs a few
// marks a second rather than one per transaction.
type commitMarks struct{ m []commitMark }

type commitMark struct {
	txid uint64
	at   time.Time
}

const (
	markSpacing = 50 * time.Millisecond
	maxMarks    = 1 << 16
)

// add records that txid committed at at.
func (c *commitMarks) add(txid uint64, at time.Time) {
	if n := len(c.m); n > 0 {
		last := c.m[n-1]
		if txid <= last.txid {
			return
		}
		if at.Sub(last.at) < markSpacing {
			return
		}
	}
	c.m = append(c.m, commitMark{txid, at})
	if len(c.m) > maxMarks {
		// Thin the older half: lags computed from it grow coarser, never
		// smaller than they are.
		old := c.m[:maxMarks/2]
		kept := old[:0]
		for i := 0; i < len(old); i += 2 {
			kept = append(kept, old[i])
		}
		c.m = append(kept, c.m[maxMarks/2:]...)
	}
}

// seed records, after a restart, that txid has waited since at; unlike add
// it may go before the marks already kept.
func (c *commitMarks) seed(txid uint64, at time.Time) {
	i, found := slices.BinarySearchFunc(c.m, txid, func(m commitMark, t uint64) int {
		switch {
		case m.txid < t:
			return -1
		case m.txid > t:
			return 1
		}
		return 0
	})
	if found {
		if at.Before(c.m[i].at) {
			c.m[i].at = at
		}
		return
	}
	c.m = slices.Insert(c.m, i, commitMark{txid, at})
}

// committedAt returns when txid was committed, or the earliest time known
// for a txid before the oldest mark.
func (c *commitMarks) committedAt(txid uint64) (time.Time, bool) {
	if len(c.m) == 0 {
		return time.Time{}, false
	}
	i, _ := slices.BinarySearchFunc(c.m, txid+1, func(m commitMark, t uint64) int {
		if m.txid < t {
			return -1
		}
		return 1
	})
	if i == 0 {
		return c.m[0].at, true
	}
	return c.m[i-1].at, true
}

// trim forgets marks of txids that every target holds: all before the
// last mark at or below oldest.
func (c *commitMarks) trim(oldest uint64) {
	i := 0
	for i+1 < len(c.m) && c.m[i+1].txid <= oldest {
		i++
	}
	if i > 0 {
		c.m = slices.Delete(c.m, 0, i)
	}
}
