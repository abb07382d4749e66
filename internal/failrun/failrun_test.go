package failrun

import (
	"errors"
	"testing"
	"time"
)

// TestRunTellsOnceAndReminds checks what a run of failed attempts makes
// the log say: its first failure, a reminder each RemindEvery while it
// lasts, nothing for the attempts between, and, at the next success, how
// many attempts failed since when; then a new run begins. Failing says
// since when, with the newest error, while the run lasts.
func TestRunTellsOnceAndReminds(t *testing.T) {
	t0 := time.Date(2026, 5, 6, 3, 0, 0, 0, time.UTC)
	var r Run
	if failed, _ := r.Succeed(); failed != 0 {
		t.Fatalf("a success with no failure before it ends a run of %d", failed)
	}
	if since, err := r.Failing(); !since.IsZero() || err != nil {
		t.Fatalf("failing since %v (%v) before any failure", since, err)
	}
	for i, step := range []struct {
		at   time.Duration
		news News
	}{
		{0, Began},
		{time.Minute, Quiet},
		{RemindEvery - time.Second, Quiet},
		{RemindEvery, Reminder},
		{RemindEvery + time.Minute, Quiet},
		{2*RemindEvery + time.Second, Reminder},
	} {
		err := errors.New("attempt " + string(rune('a'+i)))
		news, _, since := r.Fail(t0.Add(step.at), err)
		if news != step.news || !since.Equal(t0) {
			t.Fatalf("a failure %v into the run: news %d since %v, want %d since %v", step.at, news, since, step.news, t0)
		}
		if s, last := r.Failing(); !s.Equal(t0) || last != err {
			t.Fatalf("Failing says since %v with %v, want %v with the newest error", s, last, t0)
		}
	}
	if failed, since := r.Succeed(); failed != 6 || !since.Equal(t0) {
		t.Fatalf("the success ended a run of %d failures since %v, want 6 since %v", failed, since, t0)
	}
	if since, err := r.Failing(); !since.IsZero() || err != nil {
		t.Fatalf("failing since %v (%v) after a success", since, err)
	}
	later := t0.Add(time.Hour)
	if news, failed, since := r.Fail(later, errors.New("again")); news != Began || failed != 1 || !since.Equal(later) {
		t.Fatalf("the first failure after a success: news %d, %d failed since %v; want a new run", news, failed, since)
	}
}
