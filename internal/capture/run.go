package capture

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/uploader"
)

// Run captures the database until ctx ends, then spools what it captured,
// saves its state and closes the Replicator. It returns an error only for
// a failure that retrying cannot fix; everything else (a store that is
// down, a full spool, a break in the log) is retried or answered, and
// reported through Status.
func (r *Replicator) Run(ctx context.Context) error {
	first := false
	r.runOnce.Do(func() { first = true })
	if !first {
		return errors.New("capture: Run called twice")
	}
	defer func() {
		close(r.done)
		r.Close()
	}()
	// Deferred calls run last first: cancel, then wait for the
	// goroutines, then close.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	for i, u := range r.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.upload(ctx, u, r.queues[i])
		}()
	}
	if err := r.start(ctx, &wg); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it began: nothing to save
		}
		return err
	}
	pc := newPace(ctx, &wg, r)
	tick := time.NewTimer(r.o.PollInterval)
	defer tick.Stop()
	for {
		r.step(ctx)
		stepped := time.Now()
		pc.stepped(stepped)
		if now := time.Now(); r.idleDue(now) {
			idle, err := r.goIdle(ctx, now)
			if idle {
				return ErrIdle
			}
			r.handle(ctx, err)
		}
		var jobDone <-chan struct{}
		if r.job != nil {
			jobDone = r.job.done
		}
		// The next look comes at the poll interval, or when the batch
		// falls due to ship (the budget's next token, or the end of a
		// hold) if that is sooner: a change set must not wait for a poll,
		// however rare polls are.
		wait := pc.wait(r.o.PollInterval)
		if !r.batch.empty() {
			wait = min(wait, max(time.Millisecond, time.Until(r.budget.nextLook())))
		}
		tick.Reset(wait)
		if !r.await(ctx, tick, stepped.Add(wait), pc, jobDone, stepped) {
			r.shutdown()
			return nil
		}
	}
}

// await waits for the next step: the tick, a file event (see pace), a
// Sync, a repair or the snapshot job's end. It reports false when ctx
// ended. A Sync, which waits for the pass, is answered at once.
func (r *Replicator) await(ctx context.Context, tick *time.Timer, due time.Time, pc *pace, jobDone <-chan struct{}, stepped time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		case <-pc.events:
			if pc.event(stepped) {
				// The tick steps then, unless it is due sooner anyway (a
				// change set to ship), and reads what the event announced.
				if next := stepped.Add(busyStepGap); next.Before(due) {
					tick.Reset(time.Until(next))
					due = next
				}
				continue
			}
			// A commit is several writes; letting it finish saves a pass
			// that would find it half written.
			time.Sleep(eventDelay)
		case reply := <-r.syncReq:
			r.waiting = append(r.waiting, reply)
		case f := <-r.repairs:
			f()
		case <-jobDone:
			r.finishSnapshots()
		}
		return true
	}
}

// upload runs the uploader of one target's queue until ctx ends. An
// uploader stops at the first error it cannot place on an entry, such as
// an entry dropped with its queue while it was being shipped (see
// dropBacklog); the target's change sets must keep flowing, so it is
// started again.
func (r *Replicator) upload(ctx context.Context, url, queue string) {
	ctx = r.observed(ctx, url)
	for {
		up := uploader.New(r.sp, r.openTarget, uploader.Options{
			Queue: queue,
			// An ordered queue hands out one entry at a time.
			Workers: 1,
			Log:     r.o.Log,
			Shipped: func(_ spool.ID, job uploader.Job) { r.progress.shipped(url, job) },
		})
		err := up.Run(ctx)
		if ctx.Err() != nil || errors.Is(err, spool.ErrClosed) {
			return
		}
		if err != nil && !errors.Is(err, spool.ErrDropped) {
			r.progress.targetFailed(url, fmt.Errorf("uploader stopped; restarting it: %w", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// observed returns ctx with url's store calls reported to its state, so
// that an outage shows within one failed attempt rather than after the
// store's last retry, and the first answer after it is seen at once.
func (r *Replicator) observed(ctx context.Context, url string) context.Context {
	return objstore.WithAttemptObserver(ctx, func(_ string, err error) { r.progress.attempt(url, err) })
}

func (r *Replicator) openTarget(_ context.Context, url string) (objstore.Store, error) {
	if s, ok := r.o.Targets[url]; ok {
		return &chainedStore{Store: s, url: url, p: r.progress, writer: r.writer, tmpDir: r.o.SpoolDir}, nil
	}
	return nil, fmt.Errorf("a change set names target %s, which this replicator does not have", url)
}

// start sets the capture up from the saved state, or, for a new replica,
// from what the targets already hold.
func (r *Replicator) start(ctx context.Context, wg *sync.WaitGroup) error {
	st := r.state
	for _, u := range r.urls {
		t := &target{targetState: r.progress.targets[u], store: r.o.Targets[u], dirty: snapshot.ChunkSet{}, full: true}
		if st != nil {
			if sv := st.Targets[u]; sv != nil {
				t.full, t.breakAfter = sv.Full, sv.BreakAfter
				for _, i := range sv.Dirty {
					t.dirty.Add(i)
				}
				r.progress.restore(u, sv)
			}
		}
		// A target whose newest snapshot was named with another key (a
		// key rotation) gets one under the new key at once, so that the
		// new key alone restores the latest state.
		t.forced = slices.Contains(r.o.Resnapshot, u)
		r.targets[u] = t
	}
	if st == nil {
		top, err := r.remoteTop(ctx)
		if err != nil {
			return err
		}
		r.txid, r.reserved = top, top
		if c := r.o.Continues; c != nil && c.TXID == top {
			r.continueHistory(c)
			return nil
		}
		if c := r.o.Continues; c != nil {
			r.o.Log.Warn("the replica moved on since the database was restored; starting with a snapshot", "restored_txid", c.TXID, "replica_txid", top)
		}
		r.broken = errors.New("a new replica starts with a snapshot")
		return nil
	}
	for _, g := range st.Gaps {
		r.progress.addGap(g)
	}
	r.txid, r.txTime, r.reserved = st.TXID, st.Time, st.Reserved
	r.pageSize, r.dbSize = st.PageSize, st.DBSize
	if st.Pos != nil {
		r.pos, r.posValid = *st.Pos, true
	} else if st.Quiet == nil {
		r.broken = errors.New("no log position was saved to resume from")
	}
	r.durable = r.current()
	r.progress.setLocal(r.txid, r.txTime)
	r.quiet = st.Quiet
	if r.quiet != nil {
		// Saved on going idle, when every target held every transaction:
		// there is nothing to credit, and an idle database woken by a
		// commit asks its stores for nothing it need not.
		return nil
	}
	for _, u := range r.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.reconcile(ctx, u)
		}()
	}
	return nil
}

// remoteTop finds the highest txid over every target, retrying while the
// stores cannot be reached: a new replica cannot number anything before
// it knows where the old numbering ended.
func (r *Replicator) remoteTop(ctx context.Context) (uint64, error) {
	for attempt := 1; ; attempt++ {
		var top uint64
		var err error
		for _, u := range r.urls {
			var t uint64
			if t, err = remoteTop(r.observed(ctx, u), r.o.Targets[u]); err != nil {
				err = fmt.Errorf("target %s: %w", u, err)
				break
			}
			top = max(top, t)
		}
		if err == nil {
			return top, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		r.fail(fmt.Errorf("read what the targets hold before numbering a new replica: %w", err))
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(retryDelay(attempt)):
		}
	}
}

// reconcile credits a target, after a restart, with the change sets it
// holds: ones confirmed after the state was last saved are no longer in
// the spool to be confirmed again.
func (r *Replicator) reconcile(ctx context.Context, url string) {
	for attempt := 1; ; attempt++ {
		rs, err := remoteSegments(r.observed(ctx, url), r.o.Targets[url])
		if err == nil {
			r.progress.remote(url, rs)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryDelay(attempt)):
		}
	}
}

// step does one round of work: capture, ship, answer Sync, snapshot,
// checkpoint.
func (r *Replicator) step(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	err := r.advance(ctx)
	r.handle(ctx, err)
	// A snapshot starts before the change set is written, so that the two
	// run side by side.
	r.startSnapshots(ctx, time.Now())
	if err == nil && r.broken == nil {
		if r.shipDue(time.Now()) {
			r.shipBatch()
		}
		// Everything committed before the callers asked is captured.
		for _, w := range r.waiting {
			w <- r.txid
		}
		r.waiting = r.waiting[:0]
	}
	r.handle(ctx, r.maybeCheckpoint(ctx, time.Now()))
	r.checkStopped()
	every := failedCheckEvery
	if r.o.failedCheck > 0 {
		every = r.o.failedCheck
	}
	if now := time.Now(); now.Sub(r.lastFailedCheck) >= every {
		r.lastFailedCheck = now
		r.checkFailed()
	}
}

// eventDelay is how long the capture waits after a file event before it
// reads the log.
const eventDelay = time.Millisecond

// failedCheckEvery spaces the looks at the spool's failed queue.
const failedCheckEvery = 10 * time.Second

// advance reads what the log committed since the last step.
func (r *Replicator) advance(ctx context.Context) error {
	switch {
	case r.sql == nil:
		return r.reopen(ctx)
	case r.broken != nil:
		return r.answerBreak(ctx, r.broken)
	case !r.sql.held():
		take := r.resume
		if r.continuing {
			// Once only: if it fails, the resume that follows finds no
			// position to go on from, a break answered with a snapshot.
			take, r.continuing = r.takeRestored, false
		}
		if err := r.sql.handover(ctx, take); err != nil {
			return err
		}
		r.protected = true
		return nil
	case r.job == nil && r.markDue():
		return r.moveMark(ctx)
	}
	return r.capturePass(ctx)
}

// handle answers an error of a step.
func (r *Replicator) handle(ctx context.Context, err error) {
	var be *breakError
	switch {
	case err == nil:
	case ctx.Err() != nil:
	case errors.Is(err, errRetry):
		r.o.Log.Debug("capture pass stopped early; retrying", "err", err)
	case errors.As(err, &be):
		if r.broken == nil {
			r.o.Log.Warn("the log no longer continues from what ferry captured; a snapshot will carry the database on",
				"cause", be.err)
			r.broken = be.err
		}
		if err := r.answerBreak(ctx, r.broken); err != nil {
			r.fail(err)
		}
	case errors.Is(err, syscall.ENOSPC):
		r.fail(err)
		r.spoolDiskFull(err)
	case errors.Is(err, errReopen):
		r.o.Log.Warn("the database file was replaced; reopening it")
		r.handle(ctx, r.reopen(ctx))
	default:
		r.fail(err)
	}
}

// reopen drops every handle on a database file that was replaced and opens
// the one now at the path; the new file's history is unknown, so it is a
// break.
func (r *Replicator) reopen(ctx context.Context) error {
	r.stopSnapshots()
	if !r.batch.empty() {
		r.shipBatch()
	}
	if r.sql != nil {
		r.sql.close()
		r.sql = nil
	}
	if r.log != nil {
		r.log.Close()
		r.log = nil
	}
	r.protected = false
	info, err := statDB(r.o.DBPath)
	if err != nil {
		return err
	}
	conns, err := openConns(ctx, r.o.DBPath, r.o.CheckpointBusyTimeout, r.o.AloneInProcess)
	if err != nil {
		return fmt.Errorf("capture %s: %w", r.o.DBPath, err)
	}
	r.dbInfo, r.sql = info, conns
	r.broken = errors.New("the database file was replaced")
	return nil
}

// shutdown spools what was captured and saves the state, so that a
// restart goes on without a snapshot when the log allows.
func (r *Replicator) shutdown() {
	r.stopSnapshots()
	if r.sql != nil && r.broken == nil && r.sql.held() {
		ctx := context.Background()
		if err := r.capturePass(ctx); err == nil {
			r.shipBatch()
		}
	}
	if err := r.save(); err != nil {
		r.fail(err)
	}
}
