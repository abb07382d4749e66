package capture

import (
	"context"
	"sync"
	"time"
)

// pace decides when the capture loop looks at the log again: at a file
// event while the application commits now and then, every busyStepGap
// while it commits steadily.
//
// A file event is only a hint that the log grew, and a writer raises one
// for nearly every commit. Answered one by one, they cost ferry the same
// wake-ups and system calls for every commit, however little each pass
// then reads, and on a machine the application shares, that CPU is taken
// from its commits: at 500 commits a second, the watch and the steps it
// woke were most of ferry's CPU. So once events come faster than
// busyStepGap, the capture is busy: it lets go of its own watch (whose
// reader would still wake for every commit, and whose every event the
// kernel queues in the application's write) and looks at the log every
// busyStepGap instead, each pass reading every commit of the gap. Once no
// commit came for quietAfter, it watches the log again, so that the first
// commit after a quiet moment is read at once. A watch the caller gave
// (Options.Events) is shared with other databases: it is only not
// listened to while busy.
type pace struct {
	ctx    context.Context
	wg     *sync.WaitGroup
	dbPath string
	r      *Replicator

	given  <-chan struct{}
	events <-chan struct{} // nil while busy
	stop   context.CancelFunc
	busy   bool
}

// busyStepGap is how often a busy capture looks at the log, and
// quietAfter how long it goes without a commit before it waits for file
// events again.
const (
	busyStepGap = 10 * time.Millisecond
	quietAfter  = 100 * time.Millisecond
)

func newPace(ctx context.Context, wg *sync.WaitGroup, r *Replicator) *pace {
	p := &pace{ctx: ctx, wg: wg, dbPath: r.o.DBPath, r: r, given: r.o.Events}
	p.watch()
	return p
}

// watch listens to file events again.
func (p *pace) watch() {
	p.busy = false
	if p.given != nil {
		p.events = p.given
		return
	}
	ctx, stop := context.WithCancel(p.ctx)
	p.events, p.stop = watchLog(ctx, p.wg, p.dbPath, p.r.o.Log), stop
}

// event answers a file event that came after the step at stepped, and
// reports whether the capture is busy: then the next step comes at
// stepped+busyStepGap, not at once.
func (p *pace) event(stepped time.Time) bool {
	if time.Since(stepped) >= busyStepGap {
		return false
	}
	p.busy, p.events = true, nil
	if p.stop != nil {
		p.stop()
		p.stop = nil
	}
	return true
}

// stepped is called after each step, at now: a busy capture that read no
// commit for quietAfter watches the log again.
func (p *pace) stepped(now time.Time) {
	if p.busy && now.Sub(p.r.lastCommit) >= quietAfter {
		p.watch()
	}
}

// wait is the longest the loop waits before its next step.
func (p *pace) wait(poll time.Duration) time.Duration {
	if p.busy {
		return busyStepGap
	}
	return poll
}
