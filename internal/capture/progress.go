package capture

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/uploader"
)

// txRange is an inclusive run of txids.
type txRange struct{ first, last uint64 }

// progress tracks, for Sync and Status, how far each target provably
// restores: from its newest completed snapshot, through every change set
// all of whose txids it has confirmed, without a hole; and how each target
// fares. It is shared by the capture loop, the uploaders, the snapshot
// job and callers of Status and Sync.
type progress struct {
	log     *slog.Logger
	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every change
	local   uint64
	at      time.Time
	marks   commitMarks
	targets map[string]*targetState
	gaps    []Gap
	// The capture's own failures (not a target's).
	lastErr   string
	errAt     time.Time
	errors    int64
	lastShown time.Time
}

func newProgress(urls []string, log *slog.Logger) *progress {
	p := &progress{log: log, changed: make(chan struct{}), targets: map[string]*targetState{}}
	for _, u := range urls {
		p.targets[u] = &targetState{url: u}
	}
	return p
}

// notify wakes every waiter and forgets commit times nobody lacks. The
// caller holds p.mu.
func (p *progress) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
	oldest := p.local
	for _, t := range p.targets {
		oldest = min(oldest, t.reached())
		t.progressed(p.log)
	}
	p.marks.trim(oldest + 1)
}

// setLocal records the newest captured txid and when it was committed.
// It wakes no waiter: what they wait for (see wait, waitChainable) is a
// target's progress, which the capture's own does not move, and the
// capture calls it for every transaction, thousands of times a second
// under load, where a new channel each time is a cost worth sparing.
func (p *progress) setLocal(txid uint64, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if txid != p.local {
		p.local, p.at = txid, at
		p.marks.add(txid, at)
	}
}

// restore sets a target's state from what was saved.
func (p *progress) restore(url string, sv *savedTarget) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.targets[url]
	t.base, t.baseTime, t.synced = sv.Snapshot, sv.SnapshotTime, sv.Synced
	t.unsyncedFrom, t.unsyncedCause = sv.UnsyncedFrom, sv.UnsyncedCause
	t.holdAfter = sv.HoldAfter
	if sv.Replicated > t.base {
		t.add(txRange{t.base + 1, sv.Replicated})
	}
	if !sv.WaitingSince.IsZero() {
		p.marks.seed(t.reached()+1, sv.WaitingSince)
	}
}

// unsync leaves url out of change sets until a snapshot starts for it,
// noting from, the first txid it misses, unless an earlier one is noted.
func (p *progress) unsync(url string, from uint64, cause string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.targets[url]
	// The earliest start is kept: a gap still open when another break
	// comes (say, while the snapshot that would end it runs) only grows.
	if t.base > 0 && (t.unsyncedFrom == 0 || from < t.unsyncedFrom) {
		t.unsyncedFrom, t.unsyncedCause = from, cause
	}
	t.synced = false
}

// shipped is the uploaders' callback: url holds the change set job
// names. A first-only key leaves its last txid to the job; a break marker
// has none, and adds nothing the target restores.
func (p *progress) shipped(url string, job uploader.Job) {
	first, last, err := layout.ParseAnySegmentKey(job.Key)
	if last == 0 {
		last = job.Last
	}
	if err != nil || last < first {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.targets[url]; t != nil {
		t.add(txRange{first, last})
		t.answered(p.log, p.local, time.Now())
	}
	p.notify()
}

// remote records segments a target was found to hold.
func (p *progress) remote(url string, rs []txRange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.targets[url]
	for _, r := range rs {
		t.add(r)
	}
	p.notify()
}

// snapshotDone records a snapshot at txid, stored at now. For a target
// that change sets reach again, it ends the open gap.
func (p *progress) snapshotDone(url string, txid uint64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.targets[url]
	if t.synced {
		t.unsyncedFrom, t.unsyncedCause = 0, ""
	}
	t.baseTime = now
	if txid > t.base {
		t.base = txid
		t.prune()
	}
	t.answered(p.log, p.local, time.Now())
	p.notify()
}

// setSynced records whether change sets reach url.
func (p *progress) setSynced(url string, synced bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.targets[url]
	t.synced = synced && t.stopped == ""
}

// stop stops url's target for good with err, the first time only: the
// first conflict is the one to show.
func (p *progress) stop(url string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.targets[url]
	if t == nil || t.stopped != "" {
		return
	}
	// synced is the capture loop's to change (see targetState); it
	// leaves the target out of change sets when it sees the stop.
	t.stopped = err.Error()
	t.lastErr, t.lastErrAt = t.stopped, time.Now()
	p.log.Error("target stopped", "target", url, "err", err)
	p.notify()
}

// resumesAt returns the txid of the snapshot that carries url's target
// on after a break, from which change sets follow (see
// targetState.holdAfter); 0 when none is known.
func (p *progress) resumesAt(url string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.targets[url].holdAfter
}

// stopped returns why url's target stopped, nil while it replicates.
func (p *progress) stopped(url string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.targets[url]; t != nil && t.stopped != "" {
		return fmt.Errorf("%s: %w", t.stopped, ErrOtherWriter)
	}
	return nil
}

// resync records that a snapshot at txid starts url's chain again:
// change sets reach the target from now on, but those after txid wait
// for that snapshot to be stored.
func (p *progress) resync(url string, txid uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.targets[url]
	if t.stopped != "" {
		return
	}
	t.synced = true
	// While an earlier resync snapshot is still missing, change sets
	// after it chain onto nothing: they keep waiting for the first
	// snapshot at or past it, which this one will be.
	if t.holdAfter == 0 || t.base >= t.holdAfter {
		t.holdAfter = txid
	}
}

// waitChainable returns once a change set starting at first may go to
// url, or when ctx ends.
func (p *progress) waitChainable(ctx context.Context, url string, first uint64) error {
	return p.waitUntil(ctx, nil, func() bool { return p.targets[url].chainable(first) })
}

// waitUntil returns once ok, called with p.mu held, says yes; or when ctx
// ends or done is closed.
func (p *progress) waitUntil(ctx context.Context, done <-chan struct{}, ok func() bool) error {
	for {
		p.mu.Lock()
		yes := ok()
		ch := p.changed
		p.mu.Unlock()
		if yes {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return ErrClosed
		case <-ch:
		}
	}
}

// replicated returns how far url restores.
func (p *progress) replicated(url string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.targets[url].reached()
}

// attempt is the store observer of url's target: every call its store
// makes ends here, so that a failure shows within one attempt and the
// first answer after an outage is seen at once.
func (p *progress) attempt(url string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.targets[url]
	if t == nil {
		return
	}
	if err == nil {
		t.answered(p.log, p.local, time.Now())
		return
	}
	t.failed(p.log, err, time.Now())
}

// targetFailed records a failure of url's target that is not a store
// call: a change set refused for good, an uploader that stopped.
func (p *progress) targetFailed(url string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.targets[url]; t != nil {
		t.failed(p.log, err, time.Now())
	}
}

// captureFailed records an error of the capture itself and reports
// whether it deserves a log line: a new error, or the same one again
// after a while, so that a disk that stays full is not a line per pass.
func (p *progress) captureFailed(err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	msg := err.Error()
	p.errors++
	show := msg != p.lastErr || now.Sub(p.lastShown) >= repeatErrorLogEvery
	p.lastErr, p.errAt = msg, now
	if show {
		p.lastShown = now
	}
	return show
}

// repeatErrorLogEvery spaces log lines of a capture error that repeats.
const repeatErrorLogEvery = time.Minute

// addGap records a gap in point-in-time coverage.
func (p *progress) addGap(g Gap) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gaps = append(p.gaps, g)
	if len(p.gaps) > maxGaps {
		p.gaps = slices.Clone(p.gaps[len(p.gaps)-maxGaps:])
	}
}

// gapList returns the recorded gaps.
func (p *progress) gapList() []Gap {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.gaps)
}

// wait returns once every target restores txid, or when ctx ends. It
// fails at once when a target that lacks txid stopped: it never will.
func (p *progress) wait(ctx context.Context, txid uint64, done <-chan struct{}) error {
	var stopped error
	err := p.waitUntil(ctx, done, func() bool {
		for _, t := range p.targets {
			if t.reached() >= txid {
				continue
			}
			if t.stopped != "" {
				stopped = fmt.Errorf("%s: %w", t.stopped, ErrOtherWriter)
				return true
			}
			return false
		}
		return true
	})
	if err == nil {
		err = stopped
	}
	return err
}
