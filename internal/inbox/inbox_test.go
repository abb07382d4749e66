package inbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrydb/ferry/internal/inbox"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collector records handed-over files and removes them, as the spool does.
type collector struct {
	mu   sync.Mutex
	keys []string
	fail error
}

func (c *collector) handle(path, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.keys = append(c.keys, key)
	return os.Remove(path)
}

func (c *collector) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.keys...)
}

func run(t *testing.T, dir string, c *collector) (stop func()) {
	t.Helper()
	w := inbox.New(dir, c.handle, inbox.Options{Quiet: 150 * time.Millisecond, Poll: 30 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 10s")
}

func TestCompleteFilesLeaveTheInbox(t *testing.T) {
	dir := t.TempDir()
	c := &collector{}
	defer run(t, dir, c)()
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "b.txt"), []byte("b"), 0o644)
	waitFor(t, func() bool { return len(c.got()) == 2 })
	if _, err := os.Stat(filepath.Join(dir, "a.txt")); !os.IsNotExist(err) {
		t.Fatal("a.txt still in the inbox")
	}
}

func TestFileStillBeingWrittenIsLeftAlone(t *testing.T) {
	dir := t.TempDir()
	c := &collector{}
	defer run(t, dir, c)()
	p := filepath.Join(dir, "growing.log")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	// Append more often than the quiet period for a while.
	for range 10 {
		f.Write([]byte("more\n"))
		time.Sleep(50 * time.Millisecond)
		if len(c.got()) != 0 {
			t.Fatal("a file still being written was handed over")
		}
	}
	f.Close()
	waitFor(t, func() bool { return len(c.got()) == 1 })
}

func TestTemporaryNamesIgnoredUntilRenamed(t *testing.T) {
	dir := t.TempDir()
	c := &collector{}
	defer run(t, dir, c)()
	for _, name := range []string{".hidden", "upload.part", "x.tmp", "backup~"} {
		os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644)
	}
	time.Sleep(400 * time.Millisecond)
	if got := c.got(); len(got) != 0 {
		t.Fatalf("handed over files with temporary names: %v", got)
	}
	os.Rename(filepath.Join(dir, "upload.part"), filepath.Join(dir, "upload.bin"))
	waitFor(t, func() bool { return len(c.got()) == 1 && c.got()[0] == "upload.bin" })
}

func TestFailedHandoffIsRetried(t *testing.T) {
	dir := t.TempDir()
	c := &collector{fail: errors.New("spool full")}
	defer run(t, dir, c)()
	os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644)
	time.Sleep(400 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dir, "a")); err != nil {
		t.Fatalf("a file whose handoff failed left the inbox: %v", err)
	}
	c.mu.Lock()
	c.fail = nil
	c.mu.Unlock()
	waitFor(t, func() bool { return len(c.got()) == 1 })
}

func TestMissingInboxFails(t *testing.T) {
	w := inbox.New(filepath.Join(t.TempDir(), "nope"), func(string, string) error { return nil }, inbox.Options{})
	if err := w.Run(context.Background()); err == nil {
		t.Fatal("watching a missing inbox succeeded")
	}
}
