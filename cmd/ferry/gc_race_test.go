package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/testenv"
)

// TestGCBesideAReplicatorUnderKill9 runs `ferry gc` back to back beside
// `ferry replicate` on the same replica, with a retention of 2 s and a
// grace of 7 s (the shortest gc accepts: the 5 s a snapshot of an older
// ferry waits for its reprieve, and two seconds for store clocks that
// count in seconds), while an application rewrites rows between two fixed
// contents, so that snapshots keep naming packs of the snapshots before
// them while gc deletes the packs that expired snapshots named. At random moments either the replicator or
// a running gc is killed with SIGKILL (the replicator is started again).
// Along the way it records (txid, content hash) pairs; at the end the
// replica must verify deeply, every recorded txid it still lists as
// restorable must restore to the recorded content, the latest restore
// must equal the source, and a recorded txid gc took away must be refused
// with a message naming the oldest txid that still restores.
//
// FERRY_TEST_SEED replays the random kill schedule of a logged run.
func TestGCBesideAReplicatorUnderKill9(t *testing.T) {
	needSQLite3(t)
	t.Run("file", func(t *testing.T) {
		gcUnderKill9(t, "file://"+filepath.Join(t.TempDir(), "replica"), "")
	})
	t.Run("s3", func(t *testing.T) {
		srv := testenv.S3(t)
		// For the commands given the replica URL; the daemon takes the
		// keys from its config.
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		url := fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", testenv.Bucket(t, srv), srv.Endpoint)
		keys := fmt.Sprintf("        access-key-id: %s\n        secret-access-key: %s\n", srv.AccessKey, srv.SecretKey)
		gcUnderKill9(t, url, keys)
	})
}

const (
	flipRows     = 40
	flipBlobSize = 4000
	// chaosFor is how long kills go on; they go on past it, up to
	// chaosLimit, only until each kind has happened minKills times.
	chaosFor   = 25 * time.Second
	chaosLimit = 60 * time.Second
	minKills   = 5
)

// gcArgs is the sweep under test: every txid of the last 2 s kept, and
// chunks no manifest names deleted once 2 s old.
var gcArgs = []string{"gc", "-grace", "7s", "-retention", "2s"}

// sample is a txid the replica acknowledged and the source's content
// hash at it.
type sample struct {
	txid uint64
	hash string
}

func gcUnderKill9(t *testing.T, url, keys string) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FERRY_TEST_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("FERRY_TEST_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (FERRY_TEST_SEED=%d replays the kill schedule)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	bin := ferryBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE flips (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
	for i := range flipRows {
		mustExec(t, db, "INSERT INTO flips (id, body) VALUES (?, ?)", i+1, flipBlob(i, 0))
	}
	cfg := writeConfig(t, dir, fmt.Sprintf(`dbs:
  - path: %s
    snapshot-interval: 1s
    retention: 2s
    gc-interval: 1s
    sync-interval: 100ms
    replicas:
      - url: %s
%s`, dbPath, url, keys))

	ev := &eventLog{start: time.Now()}
	var lives []*daemonProc // every run of the daemon, for the logs
	d := startDaemon(t, bin, "replicate", "-config", cfg)
	lives = append(lives, d)
	defer func() {
		if t.Failed() {
			t.Logf("seed %d; events:\n%s", seed, ev.String())
			for i, l := range lives {
				t.Logf("log of daemon run %d:\n%s", i+1, l.log())
			}
		}
	}()
	w := startFlipWriter(t, db, 3*time.Millisecond)
	g := startGCLoop(t, bin, url, ev)

	var samples []sample
	record := func() {
		w.mu.Lock() // the writer waits: the hash is the content at the txid
		defer w.mu.Unlock()
		syncDB(t, bin, dbPath, d)
		st := dbStatus(t, bin, dbPath)
		if st.Targets[0].Replicated < st.TXID {
			t.Fatalf("after sync the target holds txid %d of %d", st.Targets[0].Replicated, st.TXID)
		}
		samples = append(samples, sample{st.TXID, sha3sum(t, dbPath)})
		ev.add("recorded txid %d", st.TXID)
	}

	// Three independent random clocks: kill the replicator, kill a
	// running gc, record a sample.
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo))) }
	nextDaemonKill := time.Now().Add(between(time.Second, 4*time.Second))
	nextGCKill := time.Now().Add(between(200*time.Millisecond, 2*time.Second))
	nextSample := time.Now().Add(between(50*time.Millisecond, 400*time.Millisecond))
	start := time.Now()
	var daemonKills int
	for {
		elapsed := time.Since(start)
		if elapsed >= chaosFor && daemonKills >= minKills && g.killed.Load() >= minKills {
			break
		}
		if elapsed >= chaosLimit {
			t.Fatalf("after %s only %d kills of the replicator and %d of gc", elapsed.Round(time.Second), daemonKills, g.killed.Load())
		}
		first := nextSample
		if nextDaemonKill.Before(first) {
			first = nextDaemonKill
		}
		if nextGCKill.Before(first) {
			first = nextGCKill
		}
		timer := time.NewTimer(time.Until(first))
		<-timer.C
		switch first {
		case nextDaemonKill:
			d.signal(syscall.SIGKILL)
			<-d.done
			daemonKills++
			ev.add("replicator killed (%d)", daemonKills)
			d = startDaemon(t, bin, "replicate", "-config", cfg)
			lives = append(lives, d)
			ev.add("replicator started again")
			nextDaemonKill = time.Now().Add(between(time.Second, 4*time.Second))
		case nextGCKill:
			g.kill()
			nextGCKill = time.Now().Add(between(200*time.Millisecond, 2*time.Second))
		default:
			record()
			nextSample = time.Now().Add(between(50*time.Millisecond, 400*time.Millisecond))
		}
		if err := w.failed(); err != nil {
			t.Fatalf("the application's commit failed: %v", err)
		}
	}
	chaos := time.Since(start)

	w.stop(t)
	syncDB(t, bin, dbPath, d)
	final := dbStatus(t, bin, dbPath).TXID
	finalHash := sha3sum(t, dbPath)
	samples = append(samples, sample{final, finalHash})
	g.stop()
	d.stop(t)
	if r := runBin(t, bin, slices.Concat(gcArgs, []string{url})...); r.code != 0 {
		t.Fatalf("the last gc: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	ev.add("last gc done")
	snapshots := 0
	for _, l := range lives {
		snapshots += strings.Count(l.log(), "snapshot stored")
	}
	t.Logf("%s of kills: %d commits, %d snapshots stored, %d kills of the replicator, %d gc runs (%d killed, %d failed on their own), %d packs and chunks deleted by gc",
		chaos.Round(100*time.Millisecond), w.commits.Load(), snapshots, daemonKills, g.runs.Load(), g.killed.Load(), len(g.failures), g.chunksDeleted.Load())
	for _, f := range g.failures {
		t.Logf("a gc run failed on its own: %s", f)
	}
	if g.chunksDeleted.Load() == 0 {
		t.Fatalf("gc deleted no pack or chunk: the run never tested what it is for")
	}

	if r := runBin(t, bin, "verify", "-deep", url); r.code != 0 {
		t.Errorf("verify -deep: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		ev.explain(t, r.stdout+r.stderr)
		t.FailNow()
	}
	spans := restorable(t, bin, url)
	if len(spans) == 0 {
		t.Fatal("ferry txids lists nothing restorable")
	}
	oldest := spans[0].First
	inRange := func(txid uint64) bool {
		for _, s := range spans {
			if s.Kind == "range" && s.First <= txid && txid <= s.Last {
				return true
			}
		}
		return false
	}
	restored, refused := 0, 0
	out := t.TempDir()
	for _, s := range samples {
		target := filepath.Join(out, fmt.Sprintf("txid-%d.db", s.txid))
		if _, err := os.Stat(target); err == nil {
			continue // recorded twice: the writer made no commit between
		}
		switch {
		case inRange(s.txid):
			r := runBin(t, bin, "restore", "-txid", strconv.FormatUint(s.txid, 10), "-o", target, url)
			if r.code != 0 {
				t.Errorf("restore of the recorded txid %d, inside the restorable range: exit %d: %s", s.txid, r.code, r.stderr)
				ev.explain(t, r.stderr)
				t.FailNow()
			}
			integrityOK(t, target)
			if got := sha3sum(t, target); got != s.hash {
				t.Fatalf("restore of txid %d has hash %s, the source had %s then", s.txid, got, s.hash)
			}
			restored++
		case s.txid < oldest:
			r := runBin(t, bin, "restore", "-txid", strconv.FormatUint(s.txid, 10), "-o", target, url)
			if r.code == 0 {
				t.Fatalf("restore of txid %d, older than the oldest restorable %d, succeeded: %s", s.txid, oldest, r.stdout)
			}
			if want := fmt.Sprintf("restorable: %d-", oldest); !strings.Contains(r.stderr, want) {
				t.Fatalf("restore of txid %d, older than the oldest restorable %d, is refused without naming it (want %q):\n%s", s.txid, oldest, want, r.stderr)
			}
			if _, err := os.Stat(target); err == nil {
				t.Fatalf("a refused restore of txid %d wrote %s", s.txid, target)
			}
			refused++
		default:
			t.Fatalf("the recorded txid %d is neither restorable nor older than the oldest restorable %d: txids lists %+v", s.txid, oldest, spans)
		}
	}
	if refused == 0 {
		t.Fatalf("no recorded txid is older than the oldest restorable %d: gc kept everything", oldest)
	}

	latest := filepath.Join(out, "latest.db")
	r := runBin(t, bin, "restore", "-o", latest, url)
	if r.code != 0 {
		t.Errorf("restore of the latest state: exit %d: %s", r.code, r.stderr)
		ev.explain(t, r.stderr)
		t.FailNow()
	}
	if !strings.Contains(r.stdout, fmt.Sprintf(" to txid %d ", final)) {
		t.Fatalf("the latest restore is not txid %d: %s", final, r.stdout)
	}
	integrityOK(t, latest)
	if got := sha3sum(t, latest); got != finalHash {
		t.Fatalf("the latest restore has hash %s, the source %s", got, finalHash)
	}
	t.Logf("%d samples: %d restored (txids %s), %d refused; restorable %+v", len(samples), restored, spanText(spans), refused, spans)
}

// restorable lists what `ferry txids -json` says url restores; anything
// but restorable ranges (a gap, a hole, stranded txids) fails the test.
// A break inside a range is allowed: while the replicator is down the
// application's own checkpoint may fold commits ferry never read into
// the database, and the replicator then says so and carries on; every
// recorded txid must still restore exactly.
func restorable(t *testing.T, bin, url string) []txidSpan {
	t.Helper()
	r := runBin(t, bin, "txids", "-json", url)
	var spans []txidSpan
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &spans) != nil {
		t.Fatalf("txids -json: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	for _, s := range spans {
		switch s.Kind {
		case "range":
		case "break":
			t.Logf("a break at txid %d: the application checkpointed while the replicator was down", s.First)
		default:
			t.Fatalf("txids lists more than restorable ranges: %s", r.stdout)
		}
	}
	return spans
}

func spanText(spans []txidSpan) string {
	parts := make([]string, len(spans))
	for i, s := range spans {
		parts[i] = fmt.Sprintf("%d-%d", s.First, s.Last)
	}
	return strings.Join(parts, ", ")
}

// flipBlob is row i's content in variant v (0 or 1): fixed, so that every
// state of a row, and so of a chunk, comes back again and again.
func flipBlob(i, v int) []byte {
	b := make([]byte, flipBlobSize)
	rand.NewChaCha8([32]byte{byte(i), byte(v), 'f', 'l', 'i', 'p'}).Read(b)
	return b
}

// flipWriter sweeps the rows from one variant to the other and back, one
// row per commit. A caller holding mu holds the writer still.
type flipWriter struct {
	mu      sync.Mutex
	commits atomic.Int64
	quit    chan struct{}
	done    chan error
	err     atomic.Pointer[error]
}

func startFlipWriter(t *testing.T, db *sql.DB, every time.Duration) *flipWriter {
	var blobs [2][flipRows][]byte
	for v := range 2 {
		for i := range flipRows {
			blobs[v][i] = flipBlob(i, v)
		}
	}
	w := &flipWriter{quit: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-w.quit:
				w.done <- nil
				return
			case <-tick.C:
			}
			i, v := n%flipRows, 1-(n/flipRows)%2
			w.mu.Lock()
			_, err := db.Exec("UPDATE flips SET body = ? WHERE id = ?", blobs[v][i], i+1)
			w.mu.Unlock()
			if err != nil {
				w.err.Store(&err)
				w.done <- err
				return
			}
			w.commits.Add(1)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-w.quit:
		default:
			close(w.quit)
		}
	})
	return w
}

func (w *flipWriter) failed() error {
	if p := w.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *flipWriter) stop(t *testing.T) {
	t.Helper()
	close(w.quit)
	if err := <-w.done; err != nil {
		t.Fatalf("the application's commit failed: %v", err)
	}
}

// gcLoop runs `ferry gc` on a replica back to back until stopped.
type gcLoop struct {
	mu      sync.Mutex
	cur     *exec.Cmd // the run in progress, nil between runs
	killing bool      // cur was sent SIGKILL

	runs, killed, chunksDeleted atomic.Int64
	failures                    []string // runs that failed unkilled; read after stop

	quit chan struct{}
	done chan struct{}
}

func startGCLoop(t *testing.T, bin, url string, ev *eventLog) *gcLoop {
	g := &gcLoop{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for n := 1; ; n++ {
			select {
			case <-g.quit:
				return
			default:
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, slices.Concat(gcArgs, []string{url})...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			g.mu.Lock()
			err := cmd.Start()
			if err == nil {
				g.cur, g.killing = cmd, false
			}
			g.mu.Unlock()
			if err != nil {
				g.failures = append(g.failures, err.Error())
				return
			}
			err = cmd.Wait()
			g.mu.Lock()
			g.cur = nil
			g.mu.Unlock()
			g.runs.Add(1)
			deleted := 0
			for line := range strings.SplitSeq(stdout.String(), "\n") {
				if strings.HasPrefix(line, "deleted ") {
					ev.add("gc run %d %s", n, line)
					if strings.HasPrefix(line, "deleted packs/") || strings.HasPrefix(line, "deleted chunks/") {
						deleted++
					}
				}
			}
			g.chunksDeleted.Add(int64(deleted))
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			switch {
			case ws.Signaled() && ws.Signal() == syscall.SIGKILL:
				g.killed.Add(1)
				ev.add("gc run %d killed", n)
			case err != nil:
				g.failures = append(g.failures, fmt.Sprintf("run %d: %v: %s", n, err, stderr.String()))
				ev.add("gc run %d failed: %v: %s", n, err, strings.TrimSpace(stderr.String()))
			}
		}
	}()
	t.Cleanup(g.stop)
	return g
}

// kill sends SIGKILL to the gc running now, if one is.
func (g *gcLoop) kill() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cur != nil && !g.killing {
		g.cur.Process.Kill()
		g.killing = true
	}
}

// stop lets the run in progress finish and ends the loop.
func (g *gcLoop) stop() {
	select {
	case <-g.quit:
	default:
		close(g.quit)
	}
	<-g.done
}

// eventLog is what happened when, for the report of a failure.
type eventLog struct {
	mu    sync.Mutex
	start time.Time
	lines []string
}

func (e *eventLog) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines = append(e.lines, fmt.Sprintf("%8.3fs %s", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...)))
}

func (e *eventLog) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.lines, "\n")
}

var chunkKeyRE = regexp.MustCompile(`(chunks|packs)/[0-9a-f]{2}/[0-9a-f]+`)

// explain logs, for each chunk or pack msg names, the events that name
// it: which gc run deleted it, and when.
func (e *eventLog) explain(t *testing.T, msg string) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[string]bool{}
	for _, key := range chunkKeyRE.FindAllString(msg, -1) {
		if seen[key] {
			continue
		}
		seen[key] = true
		var hits []string
		for _, l := range e.lines {
			if strings.Contains(l, key) {
				hits = append(hits, l)
			}
		}
		t.Logf("%s: %d events:\n%s", key, len(hits), strings.Join(hits, "\n"))
	}
}
