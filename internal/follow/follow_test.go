package follow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/testenv"
)

// running is a Follower running in a goroutine.
type running struct {
	*Follower
	log    *testenv.LogBuffer
	cancel context.CancelFunc
	done   chan error
}

func startFollower(t *testing.T, store objstore.Store, path string) *running {
	t.Helper()
	lb := &testenv.LogBuffer{}
	f := New(store, path, Options{
		Replica:  "mem://test",
		Interval: 5 * time.Millisecond,
		Log:      slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	// Often, so that the tests meet the snapshot check too.
	f.checkEvery = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Follower: f, log: lb, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("follower: %v\n%s", err, r.log)
		}
		r.done <- nil // for a second stop
	case <-time.After(time.Minute):
		t.Fatalf("the follower did not stop within a minute of its context ending:\n%s", r.log)
	}
}

// waitTXID waits until the follower holds txid.
func (r *running) waitTXID(t *testing.T, txid uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.Status().TXID != txid {
		select {
		case err := <-r.done:
			r.done <- err // for stop
			t.Fatalf("the follower stopped at txid %d, waiting for %d: %v\n%s", r.Status().TXID, txid, err, r.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower is at txid %d after 30s, waiting for %d:\n%s", r.Status().TXID, txid, r.log)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func followerPath(t *testing.T) string { return filepath.Join(t.TempDir(), "follower.db") }

// The follower restores the newest state, applies what follows as it
// appears, and after a stop carries on from the txid it recorded, without
// a restore.
func TestFollowAndContinueAfterRestart(t *testing.T) {
	s := newSource(t, 4096)
	s.exec("INSERT INTO accounts (balance) SELECT 10 FROM generate_series(1, 100)")
	s.publish()
	path := followerPath(t)
	r := startFollower(t, s.store, path)
	r.waitTXID(t, s.txid)
	if st := r.Status(); st.Restores != 1 || st.ContinuedFromTXID != 0 {
		t.Fatalf("first start: %+v; want one restore", st)
	}
	for i := range 5 {
		s.exec("UPDATE accounts SET balance = balance + 1 WHERE id = 1", "UPDATE accounts SET balance = balance - 1 WHERE id = 2")
		if i%2 == 0 {
			s.exec("INSERT INTO accounts (balance, note) VALUES (0, randomblob(5000))")
		}
		s.publish()
		r.waitTXID(t, s.txid)
		sameContent(t, s, path, s.txid)
	}
	r.stop(t)
	stopped := s.txid

	s.exec("DELETE FROM accounts WHERE note IS NOT NULL", "VACUUM")
	s.publish()
	// A change set a follower killed with kill -9 was fetching stays
	// behind; the next follower removes it.
	left := filepath.Join(filepath.Dir(path), ".follower.db"+segmentInfix+"123")
	if err := os.WriteFile(left, []byte("half a change set"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = startFollower(t, s.store, path)
	r.waitTXID(t, s.txid)
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a change set a dead follower left is still there: %v", err)
	}
	st := r.Status()
	if st.ContinuedFromTXID != stopped || st.Restores != 0 || st.AppliedTxns != 2 {
		t.Fatalf("restart: %+v; want it to continue from txid %d with no restore and 2 transactions applied\n%s", st, stopped, r.log)
	}
	if !strings.Contains(r.log.String(), "continuing from the recorded state") {
		t.Fatalf("no line says the follower continued:\n%s", r.log)
	}
	sameContent(t, s, path, s.txid)
}

// Killed between a commit and its record, the follower finds its
// database one transaction past the record; it applies that transaction
// again, which changes nothing, and carries on.
func TestCommitWithoutRecordIsAppliedAgain(t *testing.T) {
	s := newSource(t, 4096)
	s.exec("INSERT INTO accounts (balance) SELECT 10 FROM generate_series(1, 100)")
	s.publish()
	path := followerPath(t)
	r := startFollower(t, s.store, path)
	r.waitTXID(t, s.txid)
	s.exec("UPDATE accounts SET balance = 11 WHERE id = 5", "INSERT INTO accounts (balance, note) VALUES (1, randomblob(9000))")
	s.publish()
	r.waitTXID(t, s.txid)
	r.stop(t)
	// The slot of the last txid is lost, as a write torn by a power
	// loss would leave it; the other slot holds the txid before.
	m, err := readMark(path, "mem://test")
	if err != nil {
		t.Fatal(err)
	}
	mf, err := os.OpenFile(markPath(path), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	mf.WriteAt([]byte("torn"), int64(m.TXID%2)*markSlotSize+20)
	mf.Close()
	m.TXID--
	s.exec("UPDATE accounts SET balance = 12 WHERE id = 6")
	s.publish()
	r = startFollower(t, s.store, path)
	r.waitTXID(t, s.txid)
	if st := r.Status(); st.Restores != 0 || st.ContinuedFromTXID != m.TXID || st.AppliedTxns != 2 {
		t.Fatalf("%+v; want txids %d and %d applied without a restore", st, m.TXID+1, s.txid)
	}
	sameContent(t, s, path, s.txid)
}

// A database whose recorded state cannot be trusted is restored anew.
func TestUntrustedStateIsRestoredAnew(t *testing.T) {
	for _, tc := range []struct {
		name, why string
		spoil     func(t *testing.T, path string)
	}{
		{"no record", "is missing", func(t *testing.T, path string) { os.Remove(markPath(path)) }},
		{"damaged record", "no whole record", func(t *testing.T, path string) {
			os.WriteFile(markPath(path), bytes.Repeat([]byte{0xff}, 2*markSlotSize), 0o644)
		}},
		{"other replica", "another replica", func(t *testing.T, path string) {
			m, _ := readMark(path, "mem://test")
			m.Replica = "s3://elsewhere/app"
			w := markFile{dbPath: path}
			defer w.close()
			w.remove()
			if err := w.write(m); err != nil {
				t.Fatal(err)
			}
		}},
		{"damaged database", "quick_check", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Page 2 is the accounts table's root; zeros there are no
			// b-tree page.
			f.WriteAt(make([]byte, 4096), 4096)
		}},
		{"not a database", "", func(t *testing.T, path string) {
			os.WriteFile(path, bytes.Repeat([]byte("x"), 8192), 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSource(t, 4096)
			s.exec("INSERT INTO accounts (balance) SELECT 10 FROM generate_series(1, 100)")
			s.publish()
			path := followerPath(t)
			r := startFollower(t, s.store, path)
			r.waitTXID(t, s.txid)
			r.stop(t)
			// Fold the WAL in, so that damage to the file is damage to
			// the state.
			checkpointed(t, path)
			tc.spoil(t, path)
			s.exec("UPDATE accounts SET balance = 11 WHERE id = 5")
			s.publish()
			s.snapshot()
			r = startFollower(t, s.store, path)
			r.waitTXID(t, s.txid)
			if st := r.Status(); st.Restores != 1 || st.ContinuedFromTXID != 0 {
				t.Fatalf("%+v; want a restore", st)
			}
			if !strings.Contains(r.log.String(), "restoring the replica's newest state") || !strings.Contains(r.log.String(), tc.why) {
				t.Fatalf("no WARN line saying why it restored (%q):\n%s", tc.why, r.log)
			}
			sameContent(t, s, path, s.txid)
		})
	}
}

// When the change sets the follower needs are gone, it restores the
// newest state in one step, says so at WARN, and carries on from there.
func TestGapRestoresTheNewestState(t *testing.T) {
	s := newSource(t, 4096)
	s.exec("INSERT INTO accounts (balance) SELECT 10 FROM generate_series(1, 100)")
	s.publish()
	path := followerPath(t)
	r := startFollower(t, s.store, path)
	r.waitTXID(t, s.txid)
	reader := openReader(t, path)
	tx, err := reader.Begin()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := sum(t, tx)

	// Retention removed txids 3-4 before the follower saw them; a
	// snapshot at 5 and a change set after it remain.
	s.exec("INSERT INTO accounts (balance) VALUES (1)", "INSERT INTO accounts (balance) VALUES (2)")
	s.publish()
	if err := s.store.Delete(context.Background(), layout.ChangeSetKey(3)); err != nil {
		t.Fatal(err)
	}
	s.exec("CREATE TABLE later (x)")
	s.snapshot()
	s.exec("INSERT INTO later VALUES (1)")
	s.publish()
	r.waitTXID(t, s.txid)
	st := r.Status()
	if st.Restores != 2 {
		t.Fatalf("%+v; want a second restore for the gap", st)
	}
	if !strings.Contains(r.log.String(), "level=WARN") || !strings.Contains(r.log.String(), "gone") {
		t.Fatalf("no WARN line for the gap:\n%s", r.log)
	}
	if n, _ := sum(t, tx); n != before {
		t.Fatalf("a reader saw %d accounts, then %d inside one read transaction", before, n)
	}
	tx.Commit()
	sameContent(t, s, path, s.txid)
	s.exec("INSERT INTO later VALUES (2)")
	s.publish()
	r.waitTXID(t, s.txid)
	sameContent(t, s, path, s.txid)
}

// A snapshot can reach the store before the change set holding its txid
// and the next one: that change set is named by the snapshot's txid, not
// the next, so a follower that restored the snapshot finds it only by a
// listing, and must keep listing until it has applied one.
func TestChangeSetStraddlingTheRestoredSnapshot(t *testing.T) {
	s := newSource(t, 4096)
	s.exec("INSERT INTO accounts (balance) VALUES (1)")
	s.snapshot()
	cs := &countingStore{Store: s.store, ops: map[string]int{}, keys: map[string]bool{}}
	path := followerPath(t)
	r := startFollower(t, cs, path)
	r.waitTXID(t, s.txid)
	restored := s.txid
	// Polls that find nothing new, so that a follower that lists only
	// once after a restore has stopped listing by now.
	cs.reset()
	waitUntil(t, "three polls", func() bool {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		return cs.ops["get"]+cs.ops["list"] >= 6
	})
	s.exec("INSERT INTO accounts (balance) VALUES (2)")
	s.publish()
	if got, err := segment.ReadHead(context.Background(), s.store, layout.ChangeSetKey(restored)); err != nil || got.First != restored || got.Last != s.txid {
		t.Fatalf("the change set is %+v, %v; want txids %d-%d under %s", got, err, restored, s.txid, layout.ChangeSetKey(restored))
	}
	r.waitTXID(t, s.txid)
	sameContent(t, s, path, s.txid)
	s.exec("INSERT INTO accounts (balance) VALUES (3)")
	s.publish()
	r.waitTXID(t, s.txid)
	sameContent(t, s, path, s.txid)
}

// An empty replica fails the start with the reason; so does a replica
// that is unreachable.
func TestNothingToFollow(t *testing.T) {
	s := newSource(t, 4096)
	s.store.Delete(context.Background(), "snapshots/0000000000000001.manifest")
	f := New(s.store, followerPath(t), Options{Replica: "mem://empty"})
	err := f.Run(context.Background())
	if !errors.Is(err, restore.ErrNoSnapshot) && !errors.Is(err, restore.ErrEmpty) {
		t.Fatalf("empty replica: %v", err)
	}
}

// failingStore fails every listing and every read while fail is set.
type failingStore struct {
	objstore.Store
	fail atomic.Bool
}

func (s *failingStore) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if s.fail.Load() {
		return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, StatusCode: 503, Err: errors.New("slow down")}
	}
	return s.Store.Get(ctx, key, rng)
}

func (s *failingStore) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	if s.fail.Load() {
		return func(yield func(objstore.Info, error) bool) {
			yield(objstore.Info{}, &objstore.Error{Op: "list", Key: prefix, StatusCode: 503, Err: errors.New("slow down")})
		}
	}
	return s.Store.List(ctx, prefix)
}

// /status answers in snake_case, /metrics has the follower's series, and
// /healthz turns red once polls have failed past the limit and green
// again when they work.
func TestHTTP(t *testing.T) {
	s := newSource(t, 4096)
	s.exec("INSERT INTO accounts (balance) VALUES (1)")
	s.publish()
	fs := &failingStore{Store: s.store}
	lb := &testenv.LogBuffer{}
	f := New(fs, followerPath(t), Options{
		Replica: "mem://test?a=1&b=2", Interval: 5 * time.Millisecond, HealthzMaxLag: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(lb, nil)),
	})
	srv := httptest.NewServer(f.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no state") {
		t.Fatalf("/healthz before the first state: %d %q", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	r := &running{Follower: f, log: lb, done: done}
	r.waitTXID(t, s.txid)
	waitUntil(t, "the follower to be caught up", func() bool { return f.Status().CaughtUp })
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz caught up: %d %q", code, body)
	}
	_, body := get("/status")
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"replica", "db", "applied_txid", "applied_time", "lag_seconds", "last_error"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("/status lacks %q: %s", k, body)
		}
	}
	if !strings.Contains(body, "a=1&b=2") {
		t.Errorf("/status escapes the replica URL: %s", body)
	}
	fs.fail.Store(true)
	waitUntil(t, "/healthz to turn red", func() bool {
		code, body := get("/healthz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "failing for") && strings.Contains(body, "slow down")
	})
	if st := f.Status(); st.LastError == "" || st.FailingSince == nil || st.LagSeconds == 0 {
		t.Fatalf("status while failing: %+v", st)
	}
	fs.fail.Store(false)
	waitUntil(t, "/healthz to turn green", func() bool { code, _ := get("/healthz"); return code == http.StatusOK })
	_, metrics := get("/metrics")
	for _, want := range []string{"ferry_follow_applied_txid 2", "ferry_follow_lag_seconds", "ferry_follow_applied_txns_total", "ferry_follow_apply_lag_seconds_bucket", `ferry_follow_http_requests_total{code="503",path="/healthz"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(lb.String(), "the follower is failing") || !strings.Contains(lb.String(), "works again") {
		t.Errorf("no WARN and INFO lines for the failure and the recovery:\n%s", lb)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A replica whose newest txid is older than the follower's is not the
// history the database followed (it was replaced under the same URL): the
// follower restores its newest state.
func TestReplacedReplicaIsRestored(t *testing.T) {
	a := newSource(t, 4096)
	a.exec("INSERT INTO accounts (balance) SELECT 10 FROM generate_series(1, 50)", "UPDATE accounts SET balance = 11", "UPDATE accounts SET balance = 12")
	a.publish()
	path := followerPath(t)
	r := startFollower(t, a.store, path)
	r.waitTXID(t, a.txid)
	r.stop(t)

	b := newSource(t, 4096)
	b.exec("INSERT INTO accounts (balance) VALUES (99)")
	b.publish()
	// The follower continues from txid 4 at start; the first poll finds
	// a replica whose newest txid is 2.
	r = startFollower(t, b.store, path)
	waitUntil(t, "a restore of the replaced replica", func() bool { return r.Status().Restores == 1 })
	r.waitTXID(t, b.txid)
	if !strings.Contains(r.log.String(), "holds nothing as new") {
		t.Fatalf("no WARN line for the replaced replica:\n%s", r.log)
	}
	sameContent(t, b, path, b.txid)
}

// goneStore, once armed, answers NotFound for the first fetch of each
// change set, as when compaction deletes one between the listing and the
// fetch.
type goneStore struct {
	objstore.Store
	armed atomic.Bool
	mu    sync.Mutex
	seen  map[string]bool
}

func (s *goneStore) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	if strings.HasPrefix(key, "segments/") && s.armed.Load() {
		s.mu.Lock()
		first := !s.seen[key]
		s.seen[key] = true
		s.mu.Unlock()
		if first {
			return nil, objstore.Info{}, &objstore.Error{Op: "get", Key: key, StatusCode: 404, Err: objstore.ErrNotFound}
		}
	}
	return s.Store.Get(ctx, key, rng)
}

// A change set that goes away between the listing and the fetch is not a
// failure: the next poll lists again.
func TestChangeSetGoneBeforeFetch(t *testing.T) {
	s := newSource(t, 4096)
	s.exec("INSERT INTO accounts (balance) VALUES (1)")
	s.publish()
	path := followerPath(t)
	gs := &goneStore{Store: s.store, seen: map[string]bool{}}
	r := startFollower(t, gs, path)
	r.waitTXID(t, s.txid)
	gs.armed.Store(true)
	s.exec("INSERT INTO accounts (balance) VALUES (2)")
	s.publish()
	r.waitTXID(t, s.txid)
	gs.mu.Lock()
	fetched := gs.seen[layout.ChangeSetKey(3)]
	gs.mu.Unlock()
	if !fetched || strings.Contains(r.log.String(), "failing") {
		t.Fatalf("a change set gone before its fetch counted as a failure:\n%s", r.log)
	}
	sameContent(t, s, path, s.txid)
}

// The lock-byte page is the one holding byte 1 GiB, whatever the page
// size.
func TestLockPage(t *testing.T) {
	for ps, want := range map[int]uint32{512: 2097153, 4096: 262145, 65536: 16385} {
		if got := lockPage(ps); got != want || int64(got-1)*int64(ps) != 1<<30 {
			t.Errorf("lockPage(%d) = %d, want %d", ps, got, want)
		}
	}
}

// A damaged change set is never applied, not even the transactions
// before the damage: the follower stays at the state it holds, says why,
// and once the replica has a snapshot past the damage, restores it.
func TestDamagedChangeSet(t *testing.T) {
	s := newSource(t, 4096)
	s.exec("INSERT INTO accounts (balance) SELECT 10 FROM generate_series(1, 50)")
	s.publish()
	path := followerPath(t)
	lb := &testenv.LogBuffer{}
	f := New(s.store, path, Options{Replica: "mem://test", Interval: 5 * time.Millisecond, Log: slog.New(slog.NewTextHandler(lb, nil))})
	f.restoreRetry = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Follower: f, log: lb, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	r.waitTXID(t, s.txid)
	at := s.txid

	// Damaged as it is published: a follower polling every 5 ms would
	// otherwise apply the whole one before it could be damaged.
	s.exec("UPDATE accounts SET balance = 11 WHERE id = 1", "UPDATE accounts SET balance = 12 WHERE id = 2")
	s.damage = func(b []byte) { b[len(b)-100] ^= 0x01 }
	s.publish()
	key := layout.ChangeSetKey(at + 1)
	waitUntil(t, "the follower to report the damage", func() bool { return strings.Contains(f.Status().LastError, key) })
	if st := f.Status(); st.TXID != at {
		t.Fatalf("the follower moved to txid %d through a damaged change set", st.TXID)
	}
	sameContent(t, s, path, at)

	s.exec("UPDATE accounts SET balance = 13 WHERE id = 3")
	s.snapshot()
	r.waitTXID(t, s.txid)
	waitUntil(t, "the error to clear", func() bool { return f.Status().LastError == "" })
	sameContent(t, s, path, s.txid)
}

// A second follower of the same database refuses to start, naming the
// first; once the first stops, it starts.
func TestOneFollowerPerDatabase(t *testing.T) {
	s := newSource(t, 4096)
	path := followerPath(t)
	r := startFollower(t, s.store, path)
	r.waitTXID(t, s.txid)
	err := New(s.store, path, Options{Replica: "mem://test"}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "another ferry follow (pid ") {
		t.Fatalf("a second follower of %s: %v", path, err)
	}
	r.stop(t)
	r = startFollower(t, s.store, path)
	r.waitTXID(t, s.txid)
}

// A new state with another page size cannot be written through SQLite
// into the old database (its pages are another size): the file is
// replaced, and the follower goes on with the new page size.
func TestPageSizeChangeReplacesTheFile(t *testing.T) {
	a := newSource(t, 4096)
	a.exec("INSERT INTO accounts (balance) SELECT 10 FROM generate_series(1, 50)", "UPDATE accounts SET balance = 11", "UPDATE accounts SET balance = 12")
	a.publish()
	path := followerPath(t)
	r := startFollower(t, a.store, path)
	r.waitTXID(t, a.txid)
	r.stop(t)

	b := newSource(t, 1024)
	b.exec("INSERT INTO accounts (balance) VALUES (99)")
	b.publish()
	r = startFollower(t, b.store, path)
	r.waitTXID(t, b.txid)
	waitUntil(t, "a restore", func() bool { return r.Status().Restores == 1 })
	if !strings.Contains(r.log.String(), "page size changed") {
		t.Fatalf("no WARN line for the page size:\n%s", r.log)
	}
	b.exec("INSERT INTO accounts (balance) VALUES (98)")
	b.publish()
	r.waitTXID(t, b.txid)
	sameContent(t, b, path, b.txid)
}

// countingStore counts the requests made through it, by operation.
type countingStore struct {
	objstore.Store
	mu   sync.Mutex
	ops  map[string]int
	keys map[string]bool
}

func (c *countingStore) add(op, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops[op]++
	c.keys[key] = true
}

func (c *countingStore) Get(ctx context.Context, key string, rng *objstore.Range) (io.ReadCloser, objstore.Info, error) {
	c.add("get", key)
	return c.Store.Get(ctx, key, rng)
}

func (c *countingStore) Head(ctx context.Context, key string) (objstore.Info, error) {
	c.add("head", key)
	return c.Store.Head(ctx, key)
}

func (c *countingStore) List(ctx context.Context, prefix string) iter.Seq2[objstore.Info, error] {
	c.add("list", prefix)
	return c.Store.List(ctx, prefix)
}

func (c *countingStore) reset() (map[string]int, map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops, keys := c.ops, c.keys
	c.ops, c.keys = map[string]int{}, map[string]bool{}
	return ops, keys
}

// An idle follower makes one request per poll, a GET of the key the next
// change set must have, and never lists; a new change set is found by
// that GET.
func TestIdleFollowerAsksForOneKey(t *testing.T) {
	s := newSource(t, 4096)
	s.exec("INSERT INTO accounts (balance) VALUES (1)")
	s.publish()
	cs := &countingStore{Store: s.store, ops: map[string]int{}, keys: map[string]bool{}}
	f := New(cs, followerPath(t), Options{Replica: "mem://test", Interval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	r := &running{Follower: f, log: &testenv.LogBuffer{}, done: done}
	r.waitTXID(t, s.txid)
	waitUntil(t, "the follower to be caught up", func() bool { return f.Status().CaughtUp })
	cs.reset()
	waitUntil(t, "50 idle polls", func() bool {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		return cs.ops["get"] >= 50
	})
	ops, keys := cs.reset()
	want := layout.ChangeSetKey(s.txid + 1)
	if ops["list"] != 0 || ops["head"] != 0 || len(keys) != 1 || !keys[want] {
		t.Fatalf("an idle follower made %v on %v; want GETs of %s alone", ops, keys, want)
	}
	s.exec("INSERT INTO accounts (balance) VALUES (2)")
	s.publish()
	r.waitTXID(t, s.txid)
	if ops, _ := cs.reset(); ops["list"] != 0 {
		t.Fatalf("the follower listed to find a new change set: %v", ops)
	}
}
