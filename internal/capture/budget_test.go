package capture

import (
	"math/rand/v2"
	"testing"
	"time"
)

// budgetLoop drives the upload budget as Run's loop does, on a fake
// clock: it looks at the batch when a commit arrives (the file event) and
// when the timer Run sets from tokenDue fires, late by what wake returns,
// and ships, as step does, when the batch holds a commit and
// budgetReady says so, charging the ship as shipBatch does.
type budgetLoop struct {
	r     *Replicator
	wake  func() time.Duration // how late the loop looks after a token fell due
	ships []time.Time
	lags  []time.Duration // commit to ship
}

func newBudgetLoop(interval time.Duration) *budgetLoop {
	return &budgetLoop{
		r:    &Replicator{o: Options{SyncInterval: interval}},
		wake: func() time.Duration { return 0 },
	}
}

// run feeds the commits, in time order, through the loop until every one
// has shipped, and returns the times of this run's ships.
func (l *budgetLoop) run(commits []time.Time) []time.Time {
	from := len(l.ships)
	var pending []time.Time
	next := 0
	var now time.Time
	for next < len(commits) || len(pending) > 0 {
		// The next look: the next commit's event, or the timer for the
		// budget's next token while a batch waits.
		at := time.Time{}
		if next < len(commits) {
			at = commits[next]
		}
		if len(pending) > 0 {
			timer := l.r.tokenDue()
			if timer.Before(now) {
				timer = now
			}
			timer = timer.Add(l.wake())
			if at.IsZero() || timer.Before(at) {
				at = timer
			}
		}
		now = at
		for next < len(commits) && !commits[next].After(now) {
			pending = append(pending, commits[next])
			next++
		}
		if len(pending) > 0 && l.r.budgetReady(now) {
			l.r.charge(now)
			l.ships = append(l.ships, now)
			for _, c := range pending {
				l.lags = append(l.lags, now.Sub(c))
			}
			pending = pending[:0]
		}
	}
	return l.ships[from:]
}

var budgetT0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// every returns n commits d apart from start.
func every(start time.Time, d time.Duration, n int) []time.Time {
	var out []time.Time
	for i := range n {
		out = append(out, start.Add(time.Duration(i)*d))
	}
	return out
}

// TestBudgetFirstCommitAfterQuietShipsAtOnce checks that a commit after a
// quiet period finds a token: the first ever, and one after a run of
// steady commits was followed by quiet.
func TestBudgetFirstCommitAfterQuietShipsAtOnce(t *testing.T) {
	const iv = time.Second
	l := newBudgetLoop(iv)
	if s := l.run([]time.Time{budgetT0}); len(s) != 1 || !s[0].Equal(budgetT0) {
		t.Fatalf("the first commit shipped at %v, want at once (%v)", s, budgetT0)
	}
	// Steady commits for five intervals, then quiet.
	steady := every(budgetT0.Add(3*iv), iv/5, 25)
	l.run(steady)
	for _, quiet := range []time.Duration{iv + iv/budgetSlack + time.Millisecond, 3 * iv, time.Hour} {
		c := l.ships[len(l.ships)-1].Add(quiet)
		if s := l.run([]time.Time{c}); len(s) != 1 || !s[0].Equal(c) {
			t.Fatalf("a commit %v after the last ship shipped at %v, want at once (%v)", quiet, s, c)
		}
	}
}

// TestBudgetSteadyCommitsStayWithinOnePerInterval checks the bound under
// steady load: commits every 0.3 interval for 20 intervals, the loop
// waking up to the whole slack late after each token, make at most 20
// uploads and the burst of one, and no window of n whole intervals holds
// more than n+1 of them, a fixed ticker's most.
func TestBudgetSteadyCommitsStayWithinOnePerInterval(t *testing.T) {
	const iv = time.Second
	for _, name := range []string{"on time", "late", "very late"} {
		t.Run(name, func(t *testing.T) {
			l := newBudgetLoop(iv)
			rng := rand.New(rand.NewPCG(1, 2))
			switch name {
			case "late":
				l.wake = func() time.Duration { return time.Duration(rng.Int64N(int64(iv / budgetSlack))) }
			case "very late":
				// Past the slack half the time: the schedule starts again.
				l.wake = func() time.Duration { return time.Duration(rng.Int64N(int64(2 * iv / budgetSlack))) }
			}
			commits := every(budgetT0, 3*iv/10, 67) // 0 to 19.8 intervals
			end := budgetT0.Add(20 * iv)
			ships := l.run(commits)
			n := 0
			for _, s := range ships {
				if s.Before(end) {
					n++
				}
			}
			if n > 20+1 {
				t.Fatalf("%d uploads in 20 intervals; the budget allows 21: %v", n, ships)
			}
			// Every upload window of n whole intervals, for n from 1 to 5.
			for i := range ships {
				for w := 1; w <= 5; w++ {
					in := 0
					for _, s := range ships[i:] {
						if s.Sub(ships[i]) < time.Duration(w)*iv {
							in++
						}
					}
					if in > w+1 {
						t.Fatalf("%d uploads within %d intervals from %v", in, w, ships[i].Sub(budgetT0))
					}
				}
			}
			// At steady load the budget is spent: no commit waits longer
			// than an interval and the loop's lateness.
			for i, lag := range l.lags {
				if lag > iv+2*iv/budgetSlack {
					t.Fatalf("commit %d waited %v", i, lag)
				}
			}
		})
	}
}

// TestBudgetCommitAfterPartialIntervalShipsWhenTheTokenIsDue checks that
// a commit that comes part way through an interval waits for the next
// token, which falls due on the budget's schedule, not a whole interval
// after the last ship. Here the last ship came 0.2 interval after its
// token fell due (the commit arrived then), so a commit 0.6 interval
// after that ship waits 0.2 interval, where a whole interval from the
// last ship would make it wait 0.4.
func TestBudgetCommitAfterPartialIntervalShipsWhenTheTokenIsDue(t *testing.T) {
	const iv = time.Second
	l := newBudgetLoop(iv)
	l.run([]time.Time{budgetT0}) // ships at once
	due := budgetT0.Add(iv + iv/budgetMargin)
	if got := l.r.tokenDue(); !got.Equal(due) {
		t.Fatalf("after the first commit the next token is due %v after it, want an interval and the margin, %v", got.Sub(budgetT0), due.Sub(budgetT0))
	}
	late := due.Add(2 * iv / 10)
	if s := l.run([]time.Time{late}); len(s) != 1 || !s[0].Equal(late) {
		t.Fatalf("a commit after its token fell due shipped at %v, want at once (%v)", s, late)
	}
	c := late.Add(6 * iv / 10)
	s := l.run([]time.Time{c})
	if len(s) != 1 {
		t.Fatalf("ships %v", s)
	}
	if want := due.Add(iv); !s[0].Equal(want) {
		t.Fatalf("a commit 0.6 interval after the last ship shipped %v after it, want %v (when the next token fell due), not a whole interval",
			s[0].Sub(late), want.Sub(late))
	}
}

// TestBudgetCadenceDoesNotDrift checks that the loop waking late after
// each token, by less than the slack, does not push the schedule: under
// steady commits the n-th upload leaves n intervals (and the margin)
// after the first and the lateness, not n times the lateness later, and
// so the cadence stays where the first commit put it and no token is
// lost.
func TestBudgetCadenceDoesNotDrift(t *testing.T) {
	const iv = time.Second
	lateness := 30 * time.Millisecond
	l := newBudgetLoop(iv)
	l.wake = func() time.Duration { return lateness }
	// The first commit, then one every 0.2 interval from 0.1 interval
	// on, so that the loop looks when the timer fires, not when a commit
	// happens to arrive as a token falls due.
	commits := append([]time.Time{budgetT0}, every(budgetT0.Add(iv/10), iv/5, 150)...) // 30 intervals
	ships := l.run(commits)
	if len(ships) < 31 {
		t.Fatalf("%d uploads for 30 intervals of steady commits, want 31: tokens were lost", len(ships))
	}
	for i, s := range ships[1:] {
		if want := budgetT0.Add(time.Duration(i+1)*iv + iv/budgetMargin); s.Before(want) || s.Sub(want) > lateness {
			t.Fatalf("upload %d left %v after t0, want within %v after %v", i+1, s.Sub(budgetT0), lateness, want.Sub(budgetT0))
		}
	}
}

// TestBudgetEarlyShipTakesThePartialToken checks a change set shipped
// before its token, as a Sync or a full batch ships: the next token falls
// due one interval (and the margin) after it, so that ships outside the
// budget do not add to those on it.
func TestBudgetEarlyShipTakesThePartialToken(t *testing.T) {
	const iv = time.Second
	l := newBudgetLoop(iv)
	l.run([]time.Time{budgetT0})
	early := budgetT0.Add(iv / 2)
	if l.r.budgetReady(early) {
		t.Fatal("a token half an interval after the last ship")
	}
	l.r.charge(early) // a Sync
	if got, want := l.r.tokenDue(), early.Add(iv+iv/budgetMargin); !got.Equal(want) {
		t.Fatalf("after an early ship the next token is due at %v, want %v", got.Sub(budgetT0), want.Sub(budgetT0))
	}
}

// TestBudgetTimerWriterCatchesEachToken checks an application that
// commits on a timer of a fifth of the interval, each commit up to 5ms
// late by its scheduler: the tokens fall due just after every fifth
// commit, so that no commit waits longer than the four before it took to
// come (and the margin), where a token falling due at the instant of a
// late commit would make it wait a whole interval.
func TestBudgetTimerWriterCatchesEachToken(t *testing.T) {
	const iv = time.Second
	l := newBudgetLoop(iv)
	rng := rand.New(rand.NewPCG(3, 4))
	commits := []time.Time{budgetT0}
	for i := 1; i < 100; i++ {
		jitter := time.Duration(rng.Int64N(int64(5 * time.Millisecond)))
		commits = append(commits, budgetT0.Add(time.Duration(i)*iv/5+jitter))
	}
	l.run(commits)
	for i, lag := range l.lags {
		if lag > 4*iv/5+iv/budgetMargin {
			t.Fatalf("commit %d waited %v for its upload, more than the four commits before it took and the margin", i, lag)
		}
	}
}
