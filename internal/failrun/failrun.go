// Package failrun follows runs of failures of an operation that is tried
// again and again (an upload, a scan of an inbox), so that the log says
// once that it is failing, again every RemindEvery while it still is, and
// once that it works again: a store down for an hour with a thousand
// files waiting leaves a few lines someone can read the next morning, not
// one per file and attempt. It also says, for a health check, since when
// the operation has been failing.
package failrun

import (
	"sync"
	"time"
)

// Run follows one operation's failures. The zero value is ready to use
// and safe for concurrent use.
type Run struct {
	mu       sync.Mutex
	failed   int       // attempts failed since the last success
	since    time.Time // when the first of them failed
	reminded time.Time // when the log last said the operation was failing
	last     error     // the newest failure's error
}

// RemindEvery is how often the log says again that an operation is still
// failing.
const RemindEvery = 10 * time.Minute

// News is what a failed attempt means for the log.
type News int

const (
	Quiet    News = iota // more of a run the log already told of
	Began                // the first failure since a success
	Reminder             // the run goes on, and a reminder is due
)

// Fail records an attempt that failed at now with err and says whether the
// log should tell of it, with how many attempts failed so far and since
// when.
func (r *Run) Fail(now time.Time, err error) (news News, failed int, since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed++
	r.last = err
	switch {
	case r.failed == 1:
		r.since, r.reminded = now, now
		news = Began
	case now.Sub(r.reminded) >= RemindEvery:
		r.reminded = now
		news = Reminder
	}
	return news, r.failed, r.since
}

// Succeed records an attempt that worked and returns the run of failures
// it ends: how many attempts failed and since when (none: nothing to
// tell).
func (r *Run) Succeed() (failed int, since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	failed, since = r.failed, r.since
	r.failed, r.last = 0, nil
	return failed, since
}

// Failing returns since when the operation has been failing, and its
// newest error; a zero time when its last attempt worked.
func (r *Run) Failing() (since time.Time, last error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed == 0 {
		return time.Time{}, nil
	}
	return r.since, r.last
}
