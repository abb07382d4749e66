package spool

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestRetryFailed refuses entries of two queues for good, then retries
// those of one: they are back in it, fresh and claimable at once, in a
// spool opened again as after a restart; the other's stay failed.
func TestRetryFailed(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := openT(t, dir, Options{Now: clk.Now})
	for _, c := range []struct{ queue, data string }{{"files", "a"}, {"files", "b"}, {"segments-x", "c"}, {"files", "d"}} {
		enqueueT(t, s, c.queue, c.data, nil)
		e := claimT(t, s, c.queue)
		if err := e.Fail(errors.New("for a while")); err != nil {
			t.Fatal(err)
		}
		clk.Advance(Backoff{}.Ceiling(1))
		e = claimT(t, s, c.queue)
		if err := e.FailPermanently(errors.New("refused")); err != nil {
			t.Fatal(err)
		}
	}
	moved, err := s.RetryFailed("files")
	if err != nil || moved != 3 {
		t.Fatalf("RetryFailed: %d moved, %v; want 3", moved, err)
	}
	s.Close()

	s = openT(t, dir, Options{Now: clk.Now})
	failed, err := s.Failed()
	if err != nil || len(failed) != 1 || failed[0].From != "segments-x" {
		t.Fatalf("failed entries after the retry: %+v, %v; want the segments one alone", failed, err)
	}
	var got []string
	for range 3 {
		e := claimT(t, s, "files")
		if e.Attempts() != 0 {
			t.Fatalf("a retried entry carries %d attempts, want a fresh one", e.Attempts())
		}
		got = append(got, readData(t, e))
		if err := e.Done(); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "d" {
		t.Fatalf("retried entries %q, want a, b, d in order", got)
	}
	wantEmpty(t, s, "files")
}

// TestRetryOnRequest asks the owner for a retry from outside, as `ferry
// spool retry` does while a daemon holds the spool: the request waits
// until the owner takes it, which moves the failed entries back and
// removes it; a request naming no queue is dropped.
func TestRetryOnRequest(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	enqueueT(t, s, "files", "a", nil)
	if err := claimT(t, s, "files").FailPermanently(errors.New("refused")); err != nil {
		t.Fatal(err)
	}
	if moved, err := s.TakeRetryRequests(); err != nil || moved != 0 {
		t.Fatalf("with no request: %d moved, %v", moved, err)
	}
	if err := RequestRetry(dir, "files"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, incomingName, retryName, "-not-a-queue"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !RetryRequested(dir, "files") {
		t.Fatal("the request is not there")
	}
	if moved, err := s.TakeRetryRequests(); err != nil || moved != 1 {
		t.Fatalf("taking the request: %d moved, %v; want 1", moved, err)
	}
	if RetryRequested(dir, "files") || len(listDir(t, filepath.Join(dir, incomingName, retryName))) != 0 {
		t.Fatal("requests left after they were taken")
	}
	if got := readData(t, claimT(t, s, "files")); got != "a" {
		t.Fatalf("the retried entry holds %q", got)
	}
	if adopted, err := s.Adopt(); err != nil || adopted != 0 {
		t.Fatalf("Adopt took the requests' directory for a queue: %d, %v", adopted, err)
	}
}
