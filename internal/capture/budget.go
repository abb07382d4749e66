package capture

import "time"

// The upload budget decides when a batch may become a change set under
// load: one upload per sync interval on average, spent as early as it
// allows. It is a token bucket that holds one token and gains one per
// interval on a fixed schedule. budget.lastShip is the time the last
// change set is charged at, and the next token falls due one interval
// later (budget.due):
//
//   - A batch ships as soon as a token is there. The first commit after a
//     quiet period finds one and ships at once; a commit after a partial
//     interval waits only until the next token falls due, not a whole
//     interval from when it came.
//   - A change set that leaves within slack (interval/4) of its token
//     falling due, because it waited for the token and the capture got
//     round to it late, or because its commit came just after, is charged
//     at the moment the token fell due: the next falls due one interval
//     after this one did. Under steady load the uploads keep a fixed
//     cadence, like a ticker's, anchored at the first commit after the
//     quiet period, instead of drifting later by the capture's own work
//     every interval (which both lowered the rate and slid the cadence
//     across the application's).
//   - A token taken more than slack after it fell due (the database was
//     quiet) starts the schedule again from this ship: the next token
//     falls due an interval and a small margin (interval/50) after it.
//     The bucket never holds more than the one token, so a quiet period
//     buys no burst. The margin is for applications that write on a timer
//     whose period divides the interval (every 200ms, say): the tokens
//     then fall due just after one of its commits rather than at the
//     same instant, where the commit a scheduler woke a millisecond late
//     would miss its token by that millisecond and wait a whole interval.
//   - A change set shipped before its token (a Sync, a batch grown to its
//     size limit) does not wait; it takes the partial token, and the next
//     falls due an interval and the margin after it.
//   - A batch whose commits waited for the token may be held, once the
//     token falls due, until the next commit, when the gaps between
//     recent commits say that the next one is near and that the wait it
//     spares that commit (most of an interval, until the next token)
//     outweighs the wait it adds to the commits held (see
//     arrivals.worthHolding). Each commit that comes during the hold
//     decides again, by the same rule, whether to wait for the one after
//     it, so a burst of commits that straddles the token goes up whole
//     rather than cut at its second commit; the hold ends at most
//     interval/holdWindow after the token fell due.
//     A writer at a steady pace that does not divide the interval (a
//     commit every 0.3-0.9s, every 700ms) then has each upload right
//     after one of its commits instead of at a random moment between
//     two; a random or heavy stream of commits is not held, and ships as
//     under a ticker. The hold ends within the slack, so the change set is
//     charged when its token fell due and the cadence does not move: a
//     hold spends no token and adds at most interval/holdWindow to any
//     commit's wait.
//   - The first commit after a quiet period finds a token and ships at
//     once, unless the gaps between recent commits say that the
//     application writes in bursts (a few commits tens of milliseconds
//     apart, then quiet): then each commit of the batch decides again, by
//     the same rule with a higher gain (burstGain), whether to wait up to
//     interval/burstGap for the next, and the batch ships once a commit is not worth waiting for,
//     or interval/burstHold after it opened. A burst then goes up in one
//     change set, as soon as it ends, instead of its first commit alone
//     and the rest an interval later: fewer uploads and a shorter wait
//     for most of its commits. Commits spaced wider than the window (a
//     quiet database, sporadic single commits) never see a hold.
//
// What the budget guarantees: of the change sets it lets go, any two are
// at least interval-slack apart, and any n+1 in a row span at least
// n*interval-slack, so a window of length w holds at most
// 1+floor((w+slack)/interval) of them. With slack below an interval, a
// window of n whole intervals holds at most n+1, as many as a fixed
// ticker at the same interval can fit in it (a tick at each end): one
// per interval and a burst of one. Under steady load an hour at the
// default 1s interval sees at most 3,601 change sets. Only a
// Sync or a full batch ships outside the budget, as before: a caller that
// syncs, or a writer that fills a batch within an interval, gets its
// change set at once (and the token with it).

// budgetSlack is the slack of the budget, as a fraction of the sync
// interval (interval/budgetSlack): enough to absorb a capture pass, a
// checkpoint or a busy machine between a token falling due and the
// change set leaving.
const budgetSlack = 4

// budgetMargin is the margin by which a schedule that starts again is
// put back, as a fraction of the sync interval (interval/budgetMargin):
// more than the jitter of a writer's timer and the capture's wake-up.
const budgetMargin = 50

// holdWindow bounds a hold, as a fraction of the sync interval
// (interval/holdWindow): inside the slack, with interval/20 left for the
// capture to read the commit that ends it and start the change set, so
// that the change set is charged when its token fell due.
const holdWindow = 5

// burstHold bounds the holds of a batch that opened with a token there,
// the first after a quiet period, as a fraction of the sync interval
// (interval/burstHold from the batch's first commit): long enough for a
// burst of a request's commits, short of the wait a ticker would give.
const burstHold = 2

// burstGap is the longest wait for the next commit of a burst, as a
// fraction of the sync interval: a burst's commits come closer together
// than a writer's steady pace, and one waited for at that pace (every
// 200ms, say) would cost the first commit after a pause its wait.
const burstGap = 10

// budget is the upload budget of one replicator: when its batch may
// become a change set.
type budget struct {
	interval time.Duration
	lastShip time.Time
	arrivals arrivals
	hold     budgetHold
}

// budgetHold is the decision to hold a batch: for the token that fell due
// at due or, for a batch that opened with a token there, for the batch
// opened at opened. It is taken at the first look and again at each
// commit that comes while it holds: hold the batch until until (not
// after it: do not hold), the last decision taken at txid last.
type budgetHold struct {
	due    time.Time
	opened time.Time
	until  time.Time
	last   uint64
}

// due returns when the budget next lets a change set go; a time in the
// past when a token is there.
func (b *budget) due() time.Time { return b.lastShip.Add(b.interval) }

// ready reports whether the budget has a token at now.
func (b *budget) ready(now time.Time) bool { return !now.Before(b.due()) }

// commit records a commit the capture read at t.
func (b *budget) commit(t time.Time) { b.arrivals.add(t) }

// shipNow reports whether a batch may ship at now on the budget: a token
// is there and the batch is not held. pending is the batch's commits,
// opened when the first of them was read, last the txid of the newest.
func (b *budget) shipNow(now time.Time, pending int, opened time.Time, last uint64) bool {
	if !b.ready(now) {
		return false
	}
	due := b.due()
	if !opened.Before(due) {
		return b.shipBurst(now, pending, opened, last)
	}
	if !b.hold.due.Equal(due) || (last != b.hold.last && now.Before(b.hold.until)) {
		// The first look since this token fell due decides, and so does
		// each commit that comes while the batch is held for it.
		b.hold.due, b.hold.last, b.hold.until = due, last, now
		window := due.Add(b.interval / holdWindow).Sub(now)
		if b.arrivals.worthHolding(pending, now.Sub(b.arrivals.last), window, b.interval, holdGain) {
			b.hold.until = now.Add(window)
		}
	}
	return !now.Before(b.hold.until)
}

// shipBurst is shipNow for a batch that opened with a token there: it
// ships at once unless the recent gaps say the next commit is near, and
// then waits for it, commit after commit, for at most interval/burstHold
// from the batch's first commit.
func (b *budget) shipBurst(now time.Time, pending int, opened time.Time, last uint64) bool {
	if !b.hold.opened.Equal(opened) {
		b.hold = budgetHold{opened: opened}
	}
	if last != b.hold.last {
		b.hold.last = last
		b.hold.until = now
		window := min(b.interval/burstGap, opened.Add(b.interval/burstHold).Sub(now))
		if b.arrivals.worthHolding(pending, now.Sub(b.arrivals.last), window, b.interval, burstGain) {
			b.hold.until = now.Add(window)
		}
	}
	return !now.Before(b.hold.until)
}

// nextLook returns when a batch that waits falls due to ship: when the
// next token falls due, or when the hold on this one ends.
func (b *budget) nextLook() time.Time {
	due := b.due()
	switch {
	case !b.hold.opened.IsZero() && b.hold.until.After(due):
		return b.hold.until
	case b.hold.due.Equal(due) && b.hold.until.After(due):
		return b.hold.until
	}
	return due
}

// charge records against the budget a change set shipped at now. A hold
// ends with the batch it was for.
func (b *budget) charge(now time.Time) {
	b.lastShip = chargedAt(b.lastShip, now, b.interval)
	b.hold = budgetHold{}
}

// chargedAt returns the time a change set shipped at now is charged at,
// when the one before was charged at last.
func chargedAt(last, now time.Time, interval time.Duration) time.Time {
	due := last.Add(interval)
	if late := now.Sub(due); late >= 0 && late <= interval/budgetSlack {
		return due
	}
	return now.Add(interval / budgetMargin)
}
