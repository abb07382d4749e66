package capture

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// budgetLoop drives the upload budget as Run's loop does, on a fake
// clock: it looks at the batch when a commit arrives (the file event) and
// when the timer Run sets from nextLook fires, late by what wake returns,
// and ships, as step does, when the batch holds a commit and shipNow says
// so, charging the ship as shipBatch does.
type budgetLoop struct {
	b    *budget
	wake func() time.Duration // how late the loop looks after a token fell due
	// noHold keeps the budget from ever holding a batch (it forgets the
	// gaps between commits), as the baseline for the holds.
	noHold bool
	txid   uint64
	ships  []time.Time
	lags   []time.Duration // commit to ship
}

func newBudgetLoop(interval time.Duration) *budgetLoop {
	return &budgetLoop{
		b:    &budget{interval: interval},
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
		// budget's next token (or the end of a hold) while a batch waits.
		at := time.Time{}
		if next < len(commits) {
			at = commits[next]
		}
		if len(pending) > 0 {
			timer := l.b.nextLook()
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
			l.b.commit(commits[next])
			if l.noHold {
				l.b.arrivals.n = 0
			}
			l.txid++
			next++
		}
		if len(pending) > 0 && l.b.shipNow(now, len(pending), pending[0], l.txid) {
			l.b.charge(now)
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
	if got := l.b.due(); !got.Equal(due) {
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
// lost. Once the budget has seen enough of the steady pace it holds each
// batch for the commit due 50ms after the loop looks (see
// budget.shipNow): that upload leaves with it, and is still charged when
// its token fell due.
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
	held := 0
	for i, s := range ships[1:] {
		want := budgetT0.Add(time.Duration(i+1)*iv + iv/budgetMargin)
		if s.Before(want) || s.Sub(want) > lateness+iv/holdWindow {
			t.Fatalf("upload %d left %v after t0, want within %v after %v", i+1, s.Sub(budgetT0), lateness+iv/holdWindow, want.Sub(budgetT0))
		}
		if s.Sub(want) > lateness && s.Before(commits[len(commits)-1]) {
			// (After the last commit a hold waits for one that never
			// comes, and ends at its window.)
			held++
			if !slices.ContainsFunc(commits, s.Equal) {
				t.Fatalf("upload %d left %v after t0, after the loop looked, but not with a commit", i+1, s.Sub(budgetT0))
			}
		}
	}
	if held < 20 {
		t.Fatalf("%d of %d uploads held for the commit 50ms after the look, want all but the first few", held, len(ships)-1)
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
	if l.b.ready(early) {
		t.Fatal("a token half an interval after the last ship")
	}
	l.b.charge(early) // a Sync
	if got, want := l.b.due(), early.Add(iv+iv/budgetMargin); !got.Equal(want) {
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

// TestBudgetHoldsOnlyWhereItShortensTheWait runs arrival patterns
// through the budget with holds and without (a ticker-like schedule), on
// the same commits, and compares the commits' waits for their upload and
// the number of uploads. Where commits come at a steady pace that does
// not divide the interval, holding for the next commit must cut the
// median and the 90th percentile wait; where they come in bursts after
// quiet gaps, holding the first commit of a burst for the rest must cut
// the median wait and the uploads; where they come at random, or
// hundreds per interval, it must cost nothing that matters (2% of
// either). It must never spend more uploads, nor make any commit wait
// longer than an interval, the margin and the hold's window.
func TestBudgetHoldsOnlyWhereItShortensTheWait(t *testing.T) {
	const iv = time.Second
	// What holds must do for each pattern: cut the wait at p50 and p90 by
	// 3% or more, cut it at p50 by 20% or more with fewer uploads
	// (bursts), or not lengthen it by more than 2%.
	const (
		notWorse = iota
		bothCut
		burstsCut
	)
	for _, c := range []struct {
		name    string
		commits func(*rand.Rand) []time.Time
		want    int
	}{
		{"uniform 0.3-0.9s", arrivalsAt(60, func(r *rand.Rand) time.Duration { return seconds(0.3 + 0.6*r.Float64()) }), bothCut},
		{"every 700ms", arrivalsAt(60, func(*rand.Rand) time.Duration { return 700 * time.Millisecond }), bothCut},
		{"every 500ms, 50ms jitter", arrivalsAt(60, func(r *rand.Rand) time.Duration { return seconds(0.45 + 0.1*r.Float64()) }), bothCut},
		{"poisson 1.7/s", arrivalsAt(60, func(r *rand.Rand) time.Duration { return seconds(r.ExpFloat64() * 0.6) }), notWorse},
		{"poisson 0.7/s", arrivalsAt(60, func(r *rand.Rand) time.Duration { return seconds(r.ExpFloat64() / 0.7) }), notWorse},
		{"poisson 5/s", arrivalsAt(150, func(r *rand.Rand) time.Duration { return seconds(r.ExpFloat64() / 5) }), notWorse},
		{"every 200ms", arrivalsAt(60, func(*rand.Rand) time.Duration { return 200 * time.Millisecond }), notWorse},
		{"bursts", burstArrivals, burstsCut},
		{"500/s", arrivalsAt(5000, func(*rand.Rand) time.Duration { return 2 * time.Millisecond }), notWorse},
	} {
		t.Run(c.name, func(t *testing.T) {
			var with, without []time.Duration
			var shipsWith, shipsWithout int
			for seed := range uint64(40) {
				commits := c.commits(rand.New(rand.NewPCG(seed, 11)))
				h := newBudgetLoop(iv)
				shipsWith += len(h.run(commits))
				with = append(with, h.lags...)
				n := newBudgetLoop(iv)
				n.noHold = true
				shipsWithout += len(n.run(commits))
				without = append(without, n.lags...)
			}
			if shipsWith > shipsWithout || (c.want == burstsCut && shipsWith >= shipsWithout) {
				t.Errorf("%d uploads with holds, %d without", shipsWith, shipsWithout)
			}
			// A commit just after a ship that started the schedule again
			// waits for the next token, an interval and the margin later,
			// and at most the hold's window more.
			if m := slices.Max(with); m > iv+iv/budgetMargin+iv/holdWindow {
				t.Errorf("a commit waited %v for its upload, more than an interval, the margin and the hold's window", m)
			}
			for _, p := range []float64{50, 90} {
				w, wo := durationPercentile(with, p), durationPercentile(without, p)
				ratio := float64(w) / float64(wo)
				t.Logf("p%.0f wait %v with holds, %v without (%.2f); %d and %d uploads", p, w, wo, ratio, shipsWith, shipsWithout)
				switch {
				case c.want == bothCut && ratio > 0.97,
					c.want == burstsCut && p == 50 && ratio > 0.8:
					t.Errorf("p%.0f wait %v with holds, %v without: holds must cut it", p, w, wo)
				case ratio > 1.02:
					t.Errorf("p%.0f wait %v with holds, %v without: holds must not lengthen it", p, w, wo)
				}
			}
		})
	}
}

// durationPercentile returns the p-th percentile of ds (nearest rank).
func durationPercentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, i)]
}

// tickerShips is what a fixed ticker at interval, at phase after t0,
// does with commits: each tick ships the commits that came since the last.
// It returns the number of uploads and each commit's wait.
func tickerShips(commits []time.Time, t0 time.Time, phase, interval time.Duration) (int, []time.Duration) {
	tick := t0.Add(phase - interval)
	var lags []time.Duration
	ships := 0
	for i := 0; i < len(commits); {
		for !tick.After(commits[i]) {
			tick = tick.Add(interval)
		}
		shipped := false
		for ; i < len(commits) && !commits[i].After(tick); i++ {
			lags = append(lags, tick.Sub(commits[i]))
			shipped = true
		}
		if shipped {
			ships++
		}
	}
	return ships, lags
}

// TestBudgetAgainstATicker compares the budget with what a fixed ticker
// at the same interval and a random phase (Litestream's way) does with
// the same commits: on the workloads the budget was made for (commits
// 0.3-0.9 s apart, every 200 ms, 500 a second), no longer a wait at the
// median and the 90th percentile, with at most half an upload more per
// busy period (the first commit after quiet ships at once; a ticker's
// first upload comes at its next tick). A commit after a quiet interval
// waits for nothing. Bursts of commits after quiet gaps are logged, not
// asserted: a burst longer than the hold goes up in two uploads where a
// ticker's tick usually takes it in one.
func TestBudgetAgainstATicker(t *testing.T) {
	const iv = time.Second
	for _, c := range []struct {
		name    string
		commits func(*rand.Rand) []time.Time
		assert  bool
	}{
		{"0.3-0.9s apart", arrivalsAt(50, func(r *rand.Rand) time.Duration { return seconds(0.3 + 0.6*r.Float64()) }), true},
		{"every 200ms", arrivalsAt(50, func(*rand.Rand) time.Duration { return 200 * time.Millisecond }), true},
		{"500/s", arrivalsAt(5000, func(*rand.Rand) time.Duration { return 2 * time.Millisecond }), true},
		{"every 1.25s", arrivalsAt(12, func(*rand.Rand) time.Duration { return 1250 * time.Millisecond }), true},
		{"bursts", burstArrivals, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			const runs = 40
			var budgetLags, tickerLags []time.Duration
			var budgetShips, tickerShipsN int
			for seed := range uint64(runs) {
				commits := c.commits(rand.New(rand.NewPCG(seed, 11)))
				l := newBudgetLoop(iv)
				budgetShips += len(l.run(commits))
				budgetLags = append(budgetLags, l.lags...)
				phase := time.Duration(rand.New(rand.NewPCG(seed, 12)).Int64N(int64(iv)))
				n, lags := tickerShips(commits, budgetT0, phase, iv)
				tickerShipsN += n
				tickerLags = append(tickerLags, lags...)
			}
			perRun := func(n int) float64 { return float64(n) / runs }
			t.Logf("budget p50/p90 %v/%v, %.2f uploads a run; ticker %v/%v, %.2f",
				durationPercentile(budgetLags, 50), durationPercentile(budgetLags, 90), perRun(budgetShips),
				durationPercentile(tickerLags, 50), durationPercentile(tickerLags, 90), perRun(tickerShipsN))
			if !c.assert {
				return
			}
			for _, p := range []float64{50, 90} {
				// At 500/s both wait U(0, interval): a tie, to the
				// rounding of the fake clock.
				if b, tk := durationPercentile(budgetLags, p), durationPercentile(tickerLags, p); b > tk+tk/100 {
					t.Errorf("p%.0f wait %v, a ticker's %v", p, b, tk)
				}
			}
			if extra := perRun(budgetShips) - perRun(tickerShipsN); extra > 0.5 {
				t.Errorf("%.2f uploads a run more than a ticker", extra)
			}
		})
	}
}

// seconds is s seconds.
func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// arrivalsAt returns an arrival pattern: n commits, the first at a random
// moment of the second after budgetT0, each gap after it drawn by gap.
func arrivalsAt(n int, gap func(*rand.Rand) time.Duration) func(*rand.Rand) []time.Time {
	return func(rng *rand.Rand) []time.Time {
		at := budgetT0.Add(time.Duration(rng.Int64N(int64(time.Second))))
		var out []time.Time
		for range n {
			out = append(out, at)
			at = at.Add(gap(rng))
		}
		return out
	}
}

// burstArrivals is 60 commits in bursts of 2-8, 20-80 ms apart, with 0.1 s
// and an exponential time of mean 1.4 s between bursts (the bursts
// workload of the lag benchmark).
func burstArrivals(rng *rand.Rand) []time.Time {
	var out []time.Time
	at := budgetT0
	for len(out) < 60 {
		for range 2 + rng.IntN(7) {
			out = append(out, at)
			at = at.Add(seconds(0.02 + 0.06*rng.Float64()))
		}
		at = at.Add(seconds(0.1 + rng.ExpFloat64()*1.4))
	}
	return out
}

// TestBudgetHeldBurstGoesUpWhole checks a burst of commits that
// straddles a token: once the gaps between recent commits say the writer
// writes in bursts, the batch waiting for the token is held through the
// burst's commits after it, one by one, and goes up whole, within
// interval/holdWindow of the token and charged at it, rather than cut
// after the first commit that comes during the hold, leaving the rest of
// the burst a whole interval to wait.
func TestBudgetHeldBurstGoesUpWhole(t *testing.T) {
	const iv = time.Second
	const gap = 30 * time.Millisecond
	l := newBudgetLoop(iv)
	// The writer's history: bursts of five commits 30ms apart, 1.5s
	// between bursts.
	for i := range 10 {
		l.run(every(budgetT0.Add(time.Duration(i)*3*iv/2), gap, 5))
	}
	due := l.b.due()
	burst := every(due.Add(-2*gap), gap, 5) // two commits before the token, three from it
	ships := l.run(burst)
	if len(ships) != 1 {
		t.Fatalf("a burst across its token went up in %d uploads at %v after the token, want 1", len(ships), ships)
	}
	if last := burst[len(burst)-1]; ships[0].Before(last) || ships[0].Sub(due) > iv/holdWindow {
		t.Fatalf("the burst went up %v after its token, want after its last commit (%v) and within %v",
			ships[0].Sub(due), last.Sub(due), iv/holdWindow)
	}
	if got := l.b.due(); !got.Equal(due.Add(iv)) {
		t.Fatalf("after the held upload the next token is due %v after the last, want an interval: the hold moved the cadence", got.Sub(due))
	}
}
