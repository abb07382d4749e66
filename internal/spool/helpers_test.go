package spool

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

func openT(t testing.TB, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func writeBytes(b []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}
}

func enqueueT(t testing.TB, s *Spool, queue, data string, payload any) ID {
	t.Helper()
	id, err := s.Enqueue(queue, payload, writeBytes([]byte(data)))
	if err != nil {
		t.Fatalf("Enqueue(%s): %v", queue, err)
	}
	return id
}

func claimT(t testing.TB, s *Spool, queue string) *Entry {
	t.Helper()
	e, err := s.Claim(queue)
	if err != nil {
		t.Fatalf("Claim(%s): %v", queue, err)
	}
	return e
}

func wantEmpty(t testing.TB, s *Spool, queue string) *EmptyError {
	t.Helper()
	e, err := s.Claim(queue)
	var empty *EmptyError
	if !errors.As(err, &empty) || !errors.Is(err, ErrEmpty) {
		id := ID("")
		if e != nil {
			id = e.ID()
		}
		t.Fatalf("Claim(%s) = %s, %v; want ErrEmpty", queue, id, err)
	}
	return empty
}

func readData(t testing.TB, e *Entry) string {
	t.Helper()
	b, err := os.ReadFile(e.Path())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// listDir returns the names in dir, or nil if it does not exist.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func mustCheckOK(t testing.TB, dir string, now time.Time) Report {
	t.Helper()
	r, err := Check(dir, Limits{}, now)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !r.OK() {
		var b bytes.Buffer
		r.WriteText(&b)
		t.Fatalf("Check found problems:\n%s", b.String())
	}
	return r
}

func tmpEmpty(t testing.TB, dir string) {
	t.Helper()
	if names := listDir(t, filepath.Join(dir, tmpName)); len(names) != 0 {
		t.Fatalf("tmp/ holds %v, want nothing", names)
	}
}
