package uploader_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/uploader"
)

// The benchmarks talk to a real S3 server, whose idle keep-alive
// connections outlive a run by design.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// countingStore counts Puts and can be told to fail them.
type countingStore struct {
	objstore.Store
	puts    atomic.Int32
	failErr atomic.Pointer[error]
	lie     atomic.Bool // store something other than what was sent
	// unanswered counts puts left that land but answer with an error,
	// as when the connection drops after the store took the body.
	unanswered atomic.Int32
}

func (c *countingStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	c.puts.Add(1)
	if p := c.failErr.Load(); p != nil {
		return objstore.Info{}, *p
	}
	if c.lie.Load() {
		return c.Store.Put(ctx, key, bytes.NewReader([]byte("not what was sent")), objstore.PutOptions{})
	}
	if c.unanswered.Add(-1) >= 0 {
		if _, err := c.Store.Put(ctx, key, body, opts); err != nil {
			return objstore.Info{}, err
		}
		return objstore.Info{}, &objstore.Error{Op: "put", Key: key, Err: syscall.ECONNRESET}
	}
	return c.Store.Put(ctx, key, body, opts)
}

type rig struct {
	t      *testing.T
	sp     *spool.Spool
	stores map[string]*countingStore
	src    string
	mu     sync.Mutex
	opens  int
}

func newRig(t *testing.T, targets ...string) *rig {
	t.Helper()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), spool.Options{Backoff: spool.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	r := &rig{t: t, sp: sp, stores: map[string]*countingStore{}, src: t.TempDir()}
	for _, name := range targets {
		r.stores[name] = &countingStore{Store: memstore.New()}
	}
	return r
}

func (r *rig) open(_ context.Context, url string) (objstore.Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opens++
	s, ok := r.stores[url]
	if !ok {
		return nil, fmt.Errorf("no store %s", url)
	}
	return s, nil
}

func (r *rig) enqueue(key, data string, targets ...string) {
	r.t.Helper()
	p := filepath.Join(r.src, filepath.Base(key))
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if _, err := uploader.EnqueueFile(r.sp, p, key, targets, false); err != nil {
		r.t.Fatal(err)
	}
}

// drain runs an uploader until the files queue is empty or the deadline
// passes, and stops it.
func (r *rig) drain(deadline time.Duration) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := uploader.New(r.sp, r.open, uploader.Options{Workers: 3})
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	end := time.Now().Add(deadline)
	for r.sp.Len(uploader.FilesQueue) > 0 && time.Now().Before(end) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		r.t.Fatalf("uploader: %v", err)
	}
}

func (r *rig) content(target, key string) string {
	r.t.Helper()
	rc, _, err := r.stores[target].Get(context.Background(), key, nil)
	if err != nil {
		r.t.Fatalf("%s on %s: %v", key, target, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

func TestShipsToEveryTarget(t *testing.T) {
	r := newRig(t, "a", "b")
	for i := range 20 {
		r.enqueue(fmt.Sprintf("dir/f%02d", i), fmt.Sprintf("content %d", i), "a", "b")
	}
	r.drain(10 * time.Second)
	if n := r.sp.Len(uploader.FilesQueue); n != 0 {
		t.Fatalf("%d entries left in the spool", n)
	}
	for i := range 20 {
		for _, target := range []string{"a", "b"} {
			if got, want := r.content(target, fmt.Sprintf("dir/f%02d", i)), fmt.Sprintf("content %d", i); got != want {
				t.Fatalf("%s holds %q, want %q", target, got, want)
			}
		}
	}
}

// A retry whose last attempt landed without an answer finds the bytes in
// the target and sends nothing again; a first attempt asks nothing first.
func TestRetrySkipsUploadTargetAlreadyHolds(t *testing.T) {
	r := newRig(t, "a")
	r.stores["a"].unanswered.Store(1)
	r.enqueue("k", "same", "a")
	r.drain(10 * time.Second)
	if n := r.stores["a"].puts.Load(); n != 1 {
		t.Fatalf("%d puts, want 1: the retry should have found the bytes there", n)
	}
	if r.sp.Len(uploader.FilesQueue) != 0 {
		t.Fatal("entry not finished")
	}
}

func TestTransientFailureIsRetried(t *testing.T) {
	r := newRig(t, "a")
	unavailable := error(&objstore.Error{Op: "put", Key: "k", StatusCode: 503, Err: errors.New("slow down")})
	r.stores["a"].failErr.Store(&unavailable)
	r.enqueue("k", "eventually", "a")
	go func() {
		time.Sleep(200 * time.Millisecond)
		r.stores["a"].failErr.Store(nil)
	}()
	r.drain(10 * time.Second)
	if got := r.content("a", "k"); got != "eventually" {
		t.Fatalf("got %q", got)
	}
	if n := r.stores["a"].puts.Load(); n < 2 {
		t.Fatalf("%d puts, want the failed ones retried", n)
	}
}

func TestPermanentFailureGoesToFailedQueue(t *testing.T) {
	r := newRig(t, "a")
	denied := error(&objstore.Error{Op: "put", Key: "k", StatusCode: 403, Err: errors.New("access denied")})
	r.stores["a"].failErr.Store(&denied)
	r.enqueue("k", "x", "a")
	r.enqueue("other", "y", "a")
	r.drain(5 * time.Second)
	failed, err := r.sp.Failed()
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 || r.sp.Len(uploader.FilesQueue) != 0 {
		t.Fatalf("%d failed entries and %d queued, want both failed, none blocking", len(failed), r.sp.Len(uploader.FilesQueue))
	}
	if n := r.stores["a"].puts.Load(); n != 2 {
		t.Fatalf("%d puts, want one try each for a permanent failure", n)
	}
}

func TestConfirmedTargetIsNotSentAgain(t *testing.T) {
	r := newRig(t, "a", "b")
	unavailable := error(&objstore.Error{Op: "put", StatusCode: 500, Err: errors.New("internal")})
	r.stores["b"].failErr.Store(&unavailable)
	r.enqueue("k", "data", "a", "b")
	r.drain(300 * time.Millisecond) // a confirms; b keeps failing
	if r.sp.Len(uploader.FilesQueue) != 1 {
		t.Fatal("the entry finished although target b never took it")
	}
	r.stores["b"].failErr.Store(nil)
	r.drain(10 * time.Second)
	if r.content("b", "k") != "data" || r.sp.Len(uploader.FilesQueue) != 0 {
		t.Fatal("b never received the data")
	}
	if n := r.stores["a"].puts.Load(); n != 1 {
		t.Fatalf("target a got %d puts, want 1: it had confirmed already", n)
	}
}

func TestMismatchAfterUploadIsNotConfirmed(t *testing.T) {
	r := newRig(t, "a")
	r.stores["a"].lie.Store(true)
	r.enqueue("k", "the real data", "a")
	r.drain(300 * time.Millisecond)
	if r.sp.Len(uploader.FilesQueue) != 1 {
		t.Fatal("an upload the target stored wrongly was confirmed and the local copy removed")
	}
}

func TestBadKeysRejected(t *testing.T) {
	r := newRig(t, "a")
	p := filepath.Join(r.src, "f")
	os.WriteFile(p, []byte("x"), 0o644)
	for _, key := range []string{"", "/abs", "../up", "a/../../b", "a//b"} {
		if _, err := uploader.EnqueueFile(r.sp, p, key, []string{"a"}, false); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
}

// TestStopsWhileOtherEntriesPending stops the uploader while an entry it
// cannot ship yet is queued: Run must return, not spin on releasing and
// reclaiming that entry.
func TestStopsWhileOtherEntriesPending(t *testing.T) {
	r := newRig(t, "a")
	block := make(chan struct{})
	r.stores["a"].Store = blockingStore{Store: memstore.New(), block: block}
	r.enqueue("k", "x", "a")
	ctx, cancel := context.WithCancel(context.Background())
	u := uploader.New(r.sp, r.open, uploader.Options{Workers: 2})
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("uploader did not stop after its context ended")
	}
	close(block)
	if r.sp.Len(uploader.FilesQueue) != 1 {
		t.Fatal("the unshipped entry was lost")
	}
}

// blockingStore fails every call with the caller's context error once that
// context ends, like a store whose calls were all cut off.
type blockingStore struct {
	objstore.Store
	block chan struct{}
}

func (b blockingStore) Head(ctx context.Context, key string) (objstore.Info, error) {
	select {
	case <-ctx.Done():
		return objstore.Info{}, ctx.Err()
	case <-b.block:
		return b.Store.Head(ctx, key)
	}
}

func (b blockingStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	select {
	case <-ctx.Done():
		return objstore.Info{}, ctx.Err()
	case <-b.block:
		return b.Store.Put(ctx, key, body, opts)
	}
}

// TestDoneDelayFinishesEverythingShipped runs an uploader whose shipped
// entries wait to be done together (Options.DoneDelay), stops it as soon
// as the last entry is shipped, and checks that Run returned only once
// every shipped entry was done: none is left in the spool.
func TestDoneDelayFinishesEverythingShipped(t *testing.T) {
	r := newRig(t, "a")
	const n = 40
	for i := range n {
		r.enqueue(fmt.Sprintf("f%02d", i), fmt.Sprintf("content %d", i), "a")
	}
	var shipped atomic.Int32
	all := make(chan struct{})
	u := uploader.New(r.sp, r.open, uploader.Options{Workers: 3, DoneDelay: time.Hour, Shipped: func(spool.ID, uploader.Job) {
		if shipped.Add(1) == n {
			close(all)
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	select {
	case <-all:
	case err := <-done:
		t.Fatalf("uploader stopped before shipping everything: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("uploader: %v", err)
	}
	if left := r.sp.Len(uploader.FilesQueue); left != 0 {
		t.Fatalf("%d shipped entries left in the spool after Run returned", left)
	}
	for i := range n {
		if got, want := r.content("a", fmt.Sprintf("f%02d", i)), fmt.Sprintf("content %d", i); got != want {
			t.Fatalf("a holds %q, want %q", got, want)
		}
	}
}

// logLines keeps the records of a slog handler: level and message.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Level.String()+" "+r.Message)
	return nil
}

// count returns how many lines are at level and start with msg.
func (l *logLines) count(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.HasPrefix(line, level.String()+" "+msg) {
			n++
		}
	}
	return n
}

// An outage of the store with many files waiting and many attempts
// failing leaves one warning, each later failure at debug level, and one
// line when uploads succeed again, not a warning per file and attempt.
// One worker, so that no attempt begun during the outage fails after the
// first success (which would rightly begin a new run).
func TestOutageIsLoggedOnceAndItsEnd(t *testing.T) {
	r := newRig(t, "a")
	unavailable := error(&objstore.Error{Op: "put", Key: "k", StatusCode: 503, Err: errors.New("slow down")})
	r.stores["a"].failErr.Store(&unavailable)
	for i := range 10 {
		r.enqueue(fmt.Sprintf("f%02d", i), "x", "a")
	}
	logs := &logLines{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := uploader.New(r.sp, r.open, uploader.Options{Workers: 1, Log: slog.New(logs)})
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	for r.stores["a"].puts.Load() < 30 {
		time.Sleep(5 * time.Millisecond)
	}
	r.stores["a"].failErr.Store(nil)
	for r.sp.Len(uploader.FilesQueue) > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	warn := logs.count(slog.LevelWarn, "")
	debug := logs.count(slog.LevelDebug, "upload failed; will retry")
	back := logs.count(slog.LevelInfo, "uploads succeed again")
	if warn != 1 || back != 1 || debug < 29 {
		t.Fatalf("%d warnings, %d failures at debug level, %d lines of recovery; want 1, at least 29, 1:\n%s",
			warn, debug, back, strings.Join(logs.lines, "\n"))
	}
	for i := range 10 {
		if got := r.content("a", fmt.Sprintf("f%02d", i)); got != "x" {
			t.Fatalf("f%02d holds %q", i, got)
		}
	}
}
