package uploader

import (
	"testing"
	"time"
)

// TestTroubleTellsOnceAndReminds checks what a run of failed attempts
// makes the log say: its first failure, a reminder each troubleReminder
// while it lasts, nothing for the attempts between, and, at the next
// success, how many attempts failed since when; then a new run begins.
func TestTroubleTellsOnceAndReminds(t *testing.T) {
	t0 := time.Date(2026, 5, 6, 3, 0, 0, 0, time.UTC)
	var tr trouble
	if failed, _ := tr.succeed(); failed != 0 {
		t.Fatalf("a success with no failure before it ends a run of %d", failed)
	}
	for _, step := range []struct {
		at   time.Duration
		news troubleNews
	}{
		{0, began},
		{time.Minute, quiet},
		{troubleReminder - time.Second, quiet},
		{troubleReminder, stillBad},
		{troubleReminder + time.Minute, quiet},
		{2*troubleReminder + time.Second, stillBad},
	} {
		news, _, since := tr.fail(t0.Add(step.at))
		if news != step.news || !since.Equal(t0) {
			t.Fatalf("a failure %v into the run: news %d since %v, want %d since %v", step.at, news, since, step.news, t0)
		}
	}
	if failed, since := tr.succeed(); failed != 6 || !since.Equal(t0) {
		t.Fatalf("the success ended a run of %d failures since %v, want 6 since %v", failed, since, t0)
	}
	later := t0.Add(time.Hour)
	if news, failed, since := tr.fail(later); news != began || failed != 1 || !since.Equal(later) {
		t.Fatalf("the first failure after a success: news %d, %d failed since %v; want a new run", news, failed, since)
	}
}
