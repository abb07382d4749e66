package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type target struct {
	Key     string   `json:"key"`
	Targets []string `json:"targets"`
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	id := enqueueT(t, s, "upload", "hello", target{Key: "a/b", Targets: []string{"s3", "file"}})
	if s.Len("upload") != 1 || s.Bytes() != 5 {
		t.Fatalf("Len=%d Bytes=%d, want 1 and 5", s.Len("upload"), s.Bytes())
	}
	e := claimT(t, s, "upload")
	if e.ID() != id || e.Size() != 5 || e.Attempts() != 0 || e.Queue() != "upload" {
		t.Fatalf("claimed %s size %d attempts %d queue %s", e.ID(), e.Size(), e.Attempts(), e.Queue())
	}
	if got := readData(t, e); got != "hello" {
		t.Fatalf("data %q", got)
	}
	var p target
	if err := e.Payload(&p); err != nil || p.Key != "a/b" || len(p.Targets) != 2 {
		t.Fatalf("Payload = %+v, %v", p, err)
	}
	if !strings.Contains(e.Path(), filepath.Join("q", "upload", "checkout", string(id))) {
		t.Fatalf("Path %s is not under checkout/", e.Path())
	}
	wantEmpty(t, s, "upload")
	if err := e.Done(); err != nil {
		t.Fatal(err)
	}
	if err := e.Done(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second Done = %v, want ErrNotHeld", err)
	}
	if s.Len("upload") != 0 || s.Bytes() != 0 {
		t.Fatalf("after Done Len=%d Bytes=%d", s.Len("upload"), s.Bytes())
	}
	if got := listDir(t, queueDir(dir, "upload")); !slices.Equal(got, []string{"checkout"}) {
		t.Fatalf("queue dir holds %v", got)
	}
	tmpEmpty(t, dir)
	mustCheckOK(t, dir, time.Now())
	if !slices.Equal(s.Queues(), []string{"upload"}) {
		t.Fatalf("Queues = %v", s.Queues())
	}
}

func TestFIFOAcrossClockStepBack(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := openT(t, dir, Options{Now: clk.Now})
	var ids []ID
	for i := range 20 {
		if i == 10 {
			clk.Advance(-time.Hour) // NTP stepped the clock back
		}
		ids = append(ids, enqueueT(t, s, "seg", fmt.Sprint(i), i))
	}
	if !slices.IsSorted(ids) {
		t.Fatalf("IDs not increasing: %v", ids)
	}
	// A restart must not hand out IDs below the ones already spooled.
	s.Close()
	s = openT(t, dir, Options{Now: clk.Now})
	ids = append(ids, enqueueT(t, s, "seg", "20", 20))
	for i := range 21 {
		e := claimT(t, s, "seg")
		var n int
		if err := e.Payload(&n); err != nil || n != i || e.ID() != ids[i] {
			t.Fatalf("claim %d got payload %d id %s (want %s), %v", i, n, e.ID(), ids[i], err)
		}
		if err := e.Done(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentClaimers(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	const n, workers = 1000, 16
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if _, err := s.Enqueue("up", i, writeBytes([]byte(fmt.Sprint(i)))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var mu sync.Mutex
	seen := map[int]int{}
	for range workers {
		wg.Go(func() {
			for {
				e, err := s.Claim("up")
				if errors.Is(err, ErrEmpty) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				var i int
				if err := e.Payload(&i); err != nil || readData(t, e) != fmt.Sprint(i) {
					t.Errorf("entry %s: payload %d, data %q, %v", e.ID(), i, readData(t, e), err)
				}
				mu.Lock()
				seen[i]++
				mu.Unlock()
				if err := e.Done(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("claimed %d distinct entries, want %d", len(seen), n)
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("entry %d claimed %d times", i, c)
		}
	}
	if s.Bytes() != 0 || s.Len("up") != 0 {
		t.Fatalf("Bytes=%d Len=%d after draining", s.Bytes(), s.Len("up"))
	}
}

func TestBackoffPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	opts := Options{Now: clk.Now, Backoff: Backoff{Base: time.Second, Max: 8 * time.Second}}
	s := openT(t, dir, opts)
	id := enqueueT(t, s, "up", "x", nil)
	enqueueT(t, s, "other", "y", nil)

	for attempt := 1; attempt <= 6; attempt++ {
		e := claimT(t, s, "up")
		if e.ID() != id || e.Attempts() != attempt-1 {
			t.Fatalf("attempt %d: claimed %s with %d attempts", attempt, e.ID(), e.Attempts())
		}
		start := clk.Now()
		if err := e.Fail(fmt.Errorf("store said 503 (try %d)", attempt)); err != nil {
			t.Fatal(err)
		}
		next := wantEmpty(t, s, "up").Next
		ceiling := opts.Backoff.Ceiling(attempt)
		if !next.After(start) || next.Sub(start) > ceiling {
			t.Fatalf("attempt %d: next try in %v, want in (0, %v]", attempt, next.Sub(start), ceiling)
		}
		if attempt == 3 {
			// Attempts and next try survive a restart.
			s.Close()
			s = openT(t, dir, opts)
			if got := wantEmpty(t, s, "up").Next; !got.Equal(next) {
				t.Fatalf("after reopen next try %v, want %v", got, next)
			}
		}
		clk.Set(next.Add(-time.Nanosecond))
		wantEmpty(t, s, "up")
		clk.Set(next)
	}
	e := claimT(t, s, "up")
	if e.Attempts() != 6 || e.LastError() != "store said 503 (try 6)" {
		t.Fatalf("attempts %d, last error %q", e.Attempts(), e.LastError())
	}
	if got := opts.Backoff.Ceiling(6); got != 8*time.Second {
		t.Fatalf("Ceiling(6) = %v, want the 8s cap", got)
	}
	if err := e.Done(); err != nil {
		t.Fatal(err)
	}
}

func TestFailPermanently(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := openT(t, dir, Options{Now: clk.Now})
	bad := enqueueT(t, s, "up", "bad", target{Key: "k1"})
	good := enqueueT(t, s, "up", "good", target{Key: "k2"})
	e := claimT(t, s, "up")
	if err := e.Fail(errors.New("timeout")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	e = claimT(t, s, "up")
	if err := e.FailPermanently(errors.New("403 access denied to bucket b")); err != nil {
		t.Fatal(err)
	}
	if e2 := claimT(t, s, "up"); e2.ID() != good {
		t.Fatalf("the failed entry blocks the queue: claimed %s", e2.ID())
	} else if err := e2.Release(); err != nil {
		t.Fatal(err)
	}
	failed, err := s.Failed()
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || failed[0].ID != bad || failed[0].From != "up" ||
		failed[0].Reason != "403 access denied to bucket b" || failed[0].Attempts != 1 ||
		!failed[0].FailedAt.Equal(clk.Now()) || failed[0].Size != 3 {
		t.Fatalf("Failed = %+v", failed)
	}
	var p target
	if err := json.Unmarshal(failed[0].Payload, &p); err != nil || p.Key != "k1" {
		t.Fatalf("failed payload %s, %v", failed[0].Payload, err)
	}
	r, err := Check(dir, Limits{}, clk.Now())
	if err != nil || len(r.Problems) != 1 || r.Problems[0].Kind != KindFailed ||
		!strings.Contains(r.Problems[0].Detail, "403 access denied") {
		t.Fatalf("Check = %+v, %v", r.Problems, err)
	}

	// Reopen; then retry it: claim from failed, move back; attempts reset.
	s.Close()
	s = openT(t, dir, Options{Now: clk.Now})
	f := claimT(t, s, FailedQueue)
	if f.ID() != bad {
		t.Fatalf("claimed %s from failed", f.ID())
	}
	if err := f.MoveTo("up"); err != nil {
		t.Fatal(err)
	}
	e = claimT(t, s, "up")
	if e.ID() != bad || e.Attempts() != 0 {
		t.Fatalf("retried entry %s has %d attempts", e.ID(), e.Attempts())
	}
	if s.Len(FailedQueue) != 0 || s.Len("up") != 2 || s.Bytes() != 7 {
		t.Fatalf("Len failed=%d up=%d Bytes=%d", s.Len(FailedQueue), s.Len("up"), s.Bytes())
	}
}

func TestMaxBytes(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MaxBytes: 1000})
	first := enqueueT(t, s, "up", strings.Repeat("a", 600), nil)
	_, err := s.Enqueue("up", nil, writeBytes(make([]byte, 600)))
	var full *FullError
	if !errors.Is(err, ErrFull) || !errors.As(err, &full) {
		t.Fatalf("Enqueue past the bound = %v, want ErrFull", err)
	}
	want := fmt.Sprintf("spool %s is full: 600 B of 1000 B used;", dir)
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q does not start with %q", err, want)
	}
	// A write func that swallows the error still gets ErrFull.
	_, err = s.Enqueue("up", nil, func(w io.Writer) error {
		w.Write(make([]byte, 300))
		w.Write(make([]byte, 300))
		return nil
	})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Enqueue with swallowed write error = %v, want ErrFull", err)
	}
	src := filepath.Join(t.TempDir(), "big")
	os.WriteFile(src, make([]byte, 500), 0o644)
	if _, err := s.EnqueueFile("up", nil, src, true); !errors.Is(err, ErrFull) {
		t.Fatalf("EnqueueFile past the bound = %v, want ErrFull", err)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("refused file was removed: %v", err)
	}
	// Nothing lost, nothing left behind.
	if s.Bytes() != 600 || s.Len("up") != 1 || s.reserved != 0 {
		t.Fatalf("Bytes=%d Len=%d reserved=%d", s.Bytes(), s.Len("up"), s.reserved)
	}
	tmpEmpty(t, dir)
	e := claimT(t, s, "up")
	if e.ID() != first || readData(t, e) != strings.Repeat("a", 600) {
		t.Fatalf("first entry damaged")
	}
	if err := e.Done(); err != nil {
		t.Fatal(err)
	}
	enqueueT(t, s, "up", strings.Repeat("b", 1000), nil) // exactly the bound fits
	s.Close()
	s = openT(t, dir, Options{MaxBytes: 1000})
	if s.Bytes() != 1000 {
		t.Fatalf("Bytes after reopen = %d, want 1000", s.Bytes())
	}
	if _, err := s.Enqueue("up", nil, writeBytes([]byte{1})); !errors.Is(err, ErrFull) {
		t.Fatalf("Enqueue into a full reopened spool = %v", err)
	}
}

func TestFullErrorMessage(t *testing.T) {
	err := &FullError{Dir: "/var/lib/ferry", Used: 1 << 30, Max: 1 << 30, Need: 3 << 20}
	want := "spool /var/lib/ferry is full: 1.0 GiB of 1.0 GiB used; an entry of at least 3.0 MiB does not fit"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("%q\ndoes not start with\n%q", err, want)
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 40: "5.0 TiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
