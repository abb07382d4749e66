package capture

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/segment"
)

// txRange is an inclusive run of txids.
type txRange struct{ first, last uint64 }

// progress tracks, for Sync and Status, how far each target provably
// restores: from its newest completed snapshot, through every change set
// all of whose txids it has confirmed, without a hole. It is shared by the
// capture loop, the uploaders and callers of Status and Sync.
type progress struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every change
	local   uint64
	at      time.Time
	targets map[string]*targetProgress
	gaps    []Gap
	lastErr string
	errAt   time.Time
}

type targetProgress struct {
	base    uint64    // newest completed snapshot
	ranges  []txRange // change sets confirmed above base, merged and sorted
	synced  bool
	lastErr string
	// openFrom, when not zero, is the first txid of a gap that the next
	// snapshot stored will end, and openCause why it began.
	openFrom  uint64
	openCause string
}

func newProgress(urls []string) *progress {
	p := &progress{changed: make(chan struct{}), targets: map[string]*targetProgress{}}
	for _, u := range urls {
		p.targets[u] = &targetProgress{}
	}
	return p
}

// notify wakes every waiter. The caller holds p.mu.
func (p *progress) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// reached returns how far t restores.
func (t *targetProgress) reached() uint64 {
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
func (t *targetProgress) add(r txRange) {
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
func (t *targetProgress) prune() {
	t.ranges = slices.DeleteFunc(t.ranges, func(r txRange) bool { return r.last <= t.base })
}

// setLocal records the newest captured txid.
func (p *progress) setLocal(txid uint64, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if txid != p.local {
		p.local, p.at = txid, at
		p.notify()
	}
}

// restore sets a target's position from the saved state.
func (p *progress) restore(url string, base, replicated uint64, synced bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.targets[url]
	t.base, t.synced = base, synced
	if replicated > base {
		t.add(txRange{base + 1, replicated})
	}
}

// shipped is the uploaders' callback: url holds the change set under key.
func (p *progress) shipped(url, key string) {
	first, last, err := segment.ParseKey(key)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.targets[url]; t != nil {
		t.add(txRange{first, last})
		t.lastErr = ""
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

// snapshotDone records a completed snapshot at txid.
func (p *progress) snapshotDone(url string, txid uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.targets[url]
	if txid > t.base {
		t.base = txid
		t.prune()
	}
	t.lastErr = ""
	p.notify()
}

// setSynced records whether change sets reach url.
func (p *progress) setSynced(url string, synced bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets[url].synced = synced
}

// setOpenGap records the start of a gap not yet ended (from 0: none).
func (p *progress) setOpenGap(url string, from uint64, cause string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets[url].openFrom, p.targets[url].openCause = from, cause
}

// replicated returns how far url restores.
func (p *progress) replicated(url string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.targets[url].reached()
}

// fail records an error, for one target or (url "") for the capture.
func (p *progress) fail(url string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.targets[url]; t != nil {
		t.lastErr = err.Error()
		return
	}
	p.lastErr, p.errAt = err.Error(), time.Now()
}

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

// wait returns once every target restores txid, or when ctx ends.
func (p *progress) wait(ctx context.Context, txid uint64, done <-chan struct{}) error {
	for {
		p.mu.Lock()
		ok := true
		for _, t := range p.targets {
			if t.reached() < txid {
				ok = false
				break
			}
		}
		ch := p.changed
		p.mu.Unlock()
		if ok {
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
