package inbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrydb/ferry/internal/failrun"
	"github.com/ferrydb/ferry/internal/inbox"
	"github.com/ferrydb/ferry/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// quiet is the quiet period of the tests that run on a fake clock: only
// the clock decides when it has passed, so its length does not matter.
const quiet = time.Minute

// rig runs a watcher and records what it does. Every scan and every
// handoff is an event that a test can wait for, so that no test depends
// on how long the machine takes to run a scan.
type rig struct {
	mu       sync.Mutex
	now      time.Time
	keys     []string // handed over
	attempts int      // calls of the handler, failed ones included
	fail     error
	most     int   // when set, the most files a call takes before failing
	sizes    []int // how many files each call was offered
	scans    int
	changed  chan struct{} // closed and replaced on every event
}

// handle records a handoff and removes the files, as the spool does.
func (r *rig) handle(files []inbox.File) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.notify()
	r.attempts++
	r.sizes = append(r.sizes, len(files))
	if r.fail != nil {
		return 0, r.fail
	}
	for i, f := range files {
		if r.most > 0 && i == r.most {
			return i, errors.New("taken enough")
		}
		if err := os.Remove(f.Path); err != nil {
			return i, err
		}
		r.keys = append(r.keys, f.Key)
	}
	return len(files), nil
}

func (r *rig) scanned() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scans++
	r.notify()
}

// notify wakes the waiters; r.mu is held.
func (r *rig) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *rig) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

func (r *rig) advance(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = r.now.Add(d)
}

func (r *rig) setFail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = err
}

func (r *rig) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.keys)
}

// until waits for cond, checking it after every event. The deadline only
// turns a watcher that stopped into a failure instead of a hang.
func (r *rig) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("still waiting after 30s for %s", what)
		}
	}
}

// fullScan waits until a scan that started after the call has ended: the
// scan running at the call may have missed what the test just did, the
// one after it cannot.
func (r *rig) fullScan(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	want := r.scans + 2
	r.mu.Unlock()
	r.until(t, "two scans", func() bool { return r.scans >= want })
}

// start runs a watcher on dir. With fake set, quiet periods are measured
// on the rig's clock, which moves only when a test advances it.
func start(t *testing.T, dir string, fake bool) *rig {
	t.Helper()
	r, _ := startLogged(t, dir, fake, nil)
	return r
}

// startLogged is start with the watcher's log going to log, and the
// watcher returned too.
func startLogged(t *testing.T, dir string, fake bool, log *slog.Logger) (*rig, *inbox.Watcher) {
	t.Helper()
	r := &rig{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), changed: make(chan struct{})}
	o := inbox.Options{Quiet: quiet, Poll: 10 * time.Millisecond, Now: r.clock, AfterScan: r.scanned, Log: log}
	if !fake {
		o.Quiet, o.Now = 100*time.Millisecond, nil
	}
	w := inbox.New(dir, r.handle, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return r, w
}

// TestCompleteFilesLeaveTheInbox runs on the real clock, as the daemon
// does, and waits for the handoffs themselves.
func TestCompleteFilesLeaveTheInbox(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, false)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "b.txt"), []byte("b"), 0o644)
	r.until(t, "both files handed over", func() bool { return len(r.keys) == 2 })
	if got := r.got(); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"a.txt", "sub/b.txt"}) {
		t.Fatalf("handed over %v, want a.txt and sub/b.txt", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.txt")); !os.IsNotExist(err) {
		t.Fatal("a.txt still in the inbox")
	}
}

// TestFileStillBeingWrittenIsLeftAlone appends to a file, each time after
// half a quiet period of the watcher's clock, and makes sure a scan saw
// each append before the clock moves on: the file never stays unchanged
// for a whole quiet period, so it must never be handed over, however
// slowly the test runs.
func TestFileStillBeingWrittenIsLeftAlone(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, true)
	f, err := os.Create(filepath.Join(dir, "growing.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r.fullScan(t)
	for range 10 {
		r.advance(quiet / 2)
		if _, err := f.Write([]byte("more\n")); err != nil {
			t.Fatal(err)
		}
		r.fullScan(t)
		if got := r.got(); len(got) != 0 {
			t.Fatalf("a file still being written was handed over: %v", got)
		}
	}
	f.Close()
	r.advance(quiet)
	r.until(t, "growing.log handed over once quiet", func() bool { return len(r.keys) == 1 })
}

// TestTemporaryNamesIgnoredUntilRenamed lets scans look at files with
// temporary names past their quiet period, then renames one into place.
func TestTemporaryNamesIgnoredUntilRenamed(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, true)
	for _, name := range []string{".hidden", "upload.part", "x.tmp", "backup~"} {
		os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644)
	}
	r.fullScan(t)
	r.advance(quiet)
	r.fullScan(t)
	if got := r.got(); len(got) != 0 {
		t.Fatalf("handed over files with temporary names: %v", got)
	}
	os.Rename(filepath.Join(dir, "upload.part"), filepath.Join(dir, "upload.bin"))
	r.fullScan(t)
	r.advance(quiet)
	r.until(t, "upload.bin handed over", func() bool { return len(r.keys) == 1 && r.keys[0] == "upload.bin" })
}

// TestFailedHandoffIsRetried fails the handler twice before letting it
// succeed: the file must stay in the inbox meanwhile.
func TestFailedHandoffIsRetried(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, true)
	r.setFail(errors.New("spool full"))
	os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644)
	r.fullScan(t)
	r.advance(quiet)
	r.until(t, "two failed handoffs", func() bool { return r.attempts >= 2 })
	if _, err := os.Stat(filepath.Join(dir, "a")); err != nil {
		t.Fatalf("a file whose handoff failed left the inbox: %v", err)
	}
	r.setFail(nil)
	r.until(t, "a handed over", func() bool { return len(r.keys) == 1 })
}

// TestHandsOverInBatches drops 600 files at once: the handler is offered
// at most 256 at a time, and when it takes only some of a batch the rest
// stay in the inbox and are offered again, until all are handed over,
// each once.
func TestHandsOverInBatches(t *testing.T) {
	dir := t.TempDir()
	r := start(t, dir, true)
	r.mu.Lock()
	r.most = 100
	r.mu.Unlock()
	for i := range 600 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.fullScan(t)
	r.advance(quiet)
	r.until(t, "100 taken, the rest refused", func() bool { return len(r.keys) >= 100 })
	r.mu.Lock() // no handoff runs meanwhile
	if n := countNames(t, dir); n != 600-len(r.keys) {
		t.Fatalf("%d files in the inbox after %d were taken, want %d", n, len(r.keys), 600-len(r.keys))
	}
	r.most = 0
	r.mu.Unlock()
	r.until(t, "all 600 handed over", func() bool { return len(r.keys) == 600 })
	got := r.got()
	slices.Sort(got)
	if len(slices.Compact(got)) != 600 {
		t.Fatal("a file was handed over twice")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Max(r.sizes) > 256 {
		t.Fatalf("the handler was offered %d files at once, more than 256", slices.Max(r.sizes))
	}
}

func countNames(t *testing.T, dir string) int {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}

func TestMissingInboxFails(t *testing.T) {
	w := inbox.New(filepath.Join(t.TempDir(), "nope"), func([]inbox.File) (int, error) { return 0, nil }, inbox.Options{})
	if err := w.Run(context.Background()); err == nil {
		t.Fatal("watching a missing inbox succeeded")
	}
}

// TestTroubleIsToldOnceAndItsEnd takes the inbox away under the watcher,
// then has the handler refuse files, many scans each: each run of
// failures is one WARN, a reminder once the clock has moved RemindEvery,
// one INFO when it ends, and Failing says what is wrong while it lasts.
func TestTroubleIsToldOnceAndItsEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "inbox")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	r, w := startLogged(t, dir, true, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	r.fullScan(t)
	if since, err := w.Failing(); !since.IsZero() {
		t.Fatalf("failing at start: %v", err)
	}

	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		r.fullScan(t)
	}
	if since, err := w.Failing(); since.IsZero() || !strings.Contains(fmt.Sprint(err), "cannot read the inbox") {
		t.Fatalf("an inbox gone: failing since %v: %v", since, err)
	}
	r.advance(failrun.RemindEvery)
	r.fullScan(t)
	if n := strings.Count(logs.String(), "level=WARN msg=\"inbox: cannot read it"); n != 1 {
		t.Fatalf("%d warnings for an inbox gone, want 1:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"inbox: still cannot read it"); n != 1 {
		t.Fatalf("%d reminders after %v, want 1", n, failrun.RemindEvery)
	}
	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}
	r.fullScan(t)
	if since, err := w.Failing(); !since.IsZero() || strings.Count(logs.String(), "level=INFO msg=\"inbox: readable again") != 1 {
		t.Fatalf("the inbox back: failing since %v (%v); log:\n%s", since, err, logs.String())
	}

	r.setFail(errors.New("spool full"))
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.fullScan(t)
	r.advance(quiet)
	r.until(t, "five refused handoffs", func() bool { return r.attempts >= 5 })
	if since, err := w.Failing(); since.IsZero() || !strings.Contains(fmt.Sprint(err), "spool full") {
		t.Fatalf("handoffs refused: failing since %v: %v", since, err)
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"inbox: file stays in the inbox"); n != 1 {
		t.Fatalf("%d warnings for refused handoffs, want 1", n)
	}
	r.setFail(nil)
	r.until(t, "a.txt handed over", func() bool { return len(r.keys) == 1 })
	r.fullScan(t)
	if since, _ := w.Failing(); !since.IsZero() || strings.Count(logs.String(), "level=INFO msg=\"inbox: files handed over again") != 1 {
		t.Fatalf("handoffs back: failing since %v; log:\n%s", since, logs.String())
	}
}
