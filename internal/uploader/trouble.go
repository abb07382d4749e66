package uploader

import (
	"sync"
	"time"
)

// trouble follows a run of failed upload attempts, so that the log says
// once that uploads are failing, again every troubleReminder while they
// still are, and once that they succeed again: a store down for an hour
// with a thousand files waiting leaves a few lines someone can read the
// next morning, not one per file and attempt.
type trouble struct {
	mu       sync.Mutex
	failed   int       // attempts failed since the last success
	since    time.Time // when the first of them failed
	reminded time.Time // when the log last said uploads were failing
}

// troubleReminder is how often the log says again that uploads are still
// failing.
const troubleReminder = 10 * time.Minute

// troubleNews is what a failed attempt means for the log.
type troubleNews int

const (
	quiet    troubleNews = iota // more of a run the log already told of
	began                       // the first failure since a success
	stillBad                    // a reminder is due
)

// fail records a failed attempt at now and says whether the log should
// tell of it, with how many attempts failed so far and since when.
func (t *trouble) fail(now time.Time) (news troubleNews, failed int, since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed++
	switch {
	case t.failed == 1:
		t.since, t.reminded = now, now
		news = began
	case now.Sub(t.reminded) >= troubleReminder:
		t.reminded = now
		news = stillBad
	}
	return news, t.failed, t.since
}

// succeed records a successful upload and returns the run of failures it
// ends: how many attempts failed and since when (none: nothing to tell).
func (t *trouble) succeed() (failed int, since time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	failed, since = t.failed, t.since
	t.failed = 0
	return failed, since
}
