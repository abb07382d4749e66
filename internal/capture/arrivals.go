package capture

import "time"

// arrivals keeps the gaps between the last commits the capture read, for
// the budget's hold (see budget.go): whether the next commit is near
// enough, when a token falls due, to be worth waiting for.
//
// Only the gaps are kept, not a model of them: the decision asks "of the
// gaps seen lately that were longer than the time since the last commit,
// how many ended soon after", which any arrival pattern answers for
// itself. Commits read in one pass count as gaps of zero.
type arrivals struct {
	last time.Time
	gaps [arrivalGaps]time.Duration
	n    int // gaps recorded, up to arrivalGaps
	next int // where the next gap goes
}

// arrivalGaps is how many recent gaps the decision looks at: enough for
// its estimate to settle, few enough to follow an application that
// changes its pace within a minute or so.
const arrivalGaps = 64

// Evidence the hold asks for before it waits: that many gaps recorded at
// all, and that many of them longer than the time since the last commit
// (the only ones that say when the next may come).
const (
	holdMinGaps  = 16
	holdMinAbove = 8
)

// holdGain is by how much the lag a hold is expected to save must exceed
// what it is expected to add: the estimate comes from a few dozen gaps,
// and a wrong hold costs every commit already waiting.
const holdGain = 1.5

// burstGain is holdGain for the first commits after a quiet period: a
// wrong hold there costs a commit that would have shipped at once, so
// the gaps must say much more clearly that the next one is near.
const burstGain = 2.5

// add records a commit read at t.
func (a *arrivals) add(t time.Time) {
	if !a.last.IsZero() {
		a.gaps[a.next] = max(0, t.Sub(a.last))
		a.next = (a.next + 1) % arrivalGaps
		a.n = min(a.n+1, arrivalGaps)
	}
	a.last = t
}

// worthHolding reports whether a batch of pending commits, whose token
// has fallen due, should wait up to window for the next commit, age
// after the last one, and ship right after it, rather than ship now.
//
// Shipping now leaves the next commit to wait for the next token, an
// interval after this one: it waits interval-r if it comes r from now.
// Holding ships it at once, and makes each pending commit wait r longer
// (window, if none comes). Over the recorded gaps longer than age, each
// one a guess at when the next commit comes, the hold is worth it when
// the first sum exceeds the second by gain (holdGain or burstGain). Where commits come at a
// steady pace, the next is often close and the hold saves most of an
// interval for it; where they come at random (a Poisson stream) or many
// are pending, it is not, and the batch ships at once, as a ticker would.
func (a *arrivals) worthHolding(pending int, age, window, interval time.Duration, gain float64) bool {
	if a.n < holdMinGaps || window <= 0 || pending <= 0 {
		return false
	}
	var above int
	var saved, added float64
	for _, g := range a.gaps[:a.n] {
		if g <= age {
			continue
		}
		above++
		r := g - age
		if r <= window {
			saved += float64(interval - r)
			added += float64(pending) * float64(r)
		} else {
			added += float64(pending) * float64(window)
		}
	}
	return above >= holdMinAbove && saved > gain*added
}
