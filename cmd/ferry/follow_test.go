package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/follow"
	"github.com/ferrydb/ferry/internal/testenv"
)

const (
	bankAccounts = 100
	bankBalance  = 1000
)

// TestFollowBankUnderKill9 replicates a bank (transfers between accounts
// in transactions; the sum of balances never changes) with the real
// binary, follows it with `ferry follow`, and reads the follower's
// database with four sqlite3 processes in a loop: every read must see the
// invariant, whatever the follower is doing. The follower is killed with
// SIGKILL ten times under load; each restart must carry on from the txid
// it recorded, without a restore. At the end the follower must equal the
// source by sqlite3's own content hash.
func TestFollowBankUnderKill9(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	url := "file://" + filepath.Join(dir, "replica")
	db, dbPath, src := startBankSource(t, bin, dir, url)

	followerPath := filepath.Join(dir, "follower.db")
	addr := freeAddr(t)
	var logs []*daemonProc
	startFollower := func() *daemonProc {
		f := startDaemonUntil(t, bin, "ferry is following", "-log-level", "debug", "follow", "-interval", "50ms", "-addr", addr, url, followerPath)
		logs = append(logs, f)
		return f
	}
	f := startFollower()
	if !f.logged("restoring the replica's newest state") {
		t.Fatalf("the first start did not restore:\n%s", f.log())
	}

	w := startBank(t, db)
	readers := startBankReaders(t, followerPath, 4)
	// A steady phase first, to measure the lag of a follower that keeps
	// running: until the bank has made 300 transfers.
	waitFor(t, 120*time.Second, "300 transfers", func() bool { return w.n.Load() >= 300 })
	steady := appliedLags(t, f.log())

	var restarts []time.Duration
	for kill := range 10 {
		// Kill at a moment the follower is busy: once it has applied
		// more since it started, plus a random few milliseconds, so
		// that some kills land inside a transaction or between a commit
		// and its record.
		from := followStatus(t, addr).TXID
		waitFor(t, 60*time.Second, "the follower to apply more", func() bool { return followStatus(t, addr).TXID > from+5 })
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		f.cmd.Process.Signal(syscall.SIGKILL)
		<-f.done
		readers.check(t)
		killed := time.Now()
		f = startFollower()
		restarts = append(restarts, time.Since(killed))
		if f.logged("restoring the replica's newest state") || !f.logged("continuing from the recorded state") {
			t.Fatalf("restart %d did not continue from its recorded state:\n%s", kill+1, f.log())
		}
		st := followStatus(t, addr)
		if st.ContinuedFromTXID == 0 || st.Restores != 0 {
			t.Fatalf("restart %d: status %+v; want it continued without a restore", kill+1, st)
		}
		t.Logf("restart %d continued from txid %d", kill+1, st.ContinuedFromTXID)
	}

	w.stop(t)
	syncDB(t, bin, dbPath, src)
	want := dbStatus(t, bin, dbPath).TXID
	waitFor(t, 60*time.Second, fmt.Sprintf("the follower to reach txid %d", want), func() bool { return followStatus(t, addr).TXID == want })
	reads, readP99, readMax := readers.stop(t)
	st := followStatus(t, addr)
	if st.Restores != 0 || st.LastError != "" {
		t.Fatalf("final status %+v", st)
	}
	f.stop(t)
	integrityOK(t, followerPath)
	if got, want := sha3sum(t, followerPath), sha3sum(t, dbPath); got != want {
		t.Fatalf("the follower has hash %s, the source %s", got, want)
	}

	var lags []time.Duration
	for _, p := range logs {
		lags = append(lags, appliedLags(t, p.log())...)
	}
	if len(lags) < 100 || len(steady) < 50 {
		t.Fatalf("only %d transactions logged as applied, %d in the steady phase", len(lags), len(steady))
	}
	slices.Sort(lags)
	slices.Sort(steady)
	slices.Sort(restarts)
	t.Logf("steady phase: %d transactions, commit-to-follower lag p50 %s, p99 %s, max %s; a restart after kill -9 takes p50 %s, max %s until it follows again",
		len(steady), steady[len(steady)/2].Round(time.Millisecond), steady[len(steady)*99/100].Round(time.Millisecond), steady[len(steady)-1].Round(time.Millisecond),
		restarts[len(restarts)/2].Round(time.Millisecond), restarts[len(restarts)-1].Round(time.Millisecond))
	t.Logf("%d transfers, %d transactions applied by the follower, %d reads all saw the invariant (a read, sqlite3 process included: p99 %s, max %s); over the whole run, kills included, commit-to-follower lag p50 %s, p99 %s, max %s (sync-interval 100ms, follow -interval 50ms)",
		w.n.Load(), len(lags), reads, readP99.Round(time.Millisecond), readMax.Round(time.Millisecond),
		lags[len(lags)/2].Round(time.Millisecond), lags[len(lags)*99/100].Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
}

// startBankSource creates the bank's database in dir and replicates it
// to url with the real binary, a change set every 100ms under load, and
// returns once the replica holds it.
func startBankSource(t *testing.T, bin, dir, url string) (*sql.DB, string, *daemonProc) {
	t.Helper()
	dbPath := filepath.Join(dir, "bank.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
	mustExec(t, db, "CREATE TABLE transfers (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, memo BLOB)")
	for i := 1; i <= bankAccounts; i++ {
		mustExec(t, db, "INSERT INTO accounts (id, balance) VALUES (?, ?)", i, bankBalance)
	}
	cfg := writeConfig(t, dir, fmt.Sprintf(`dbs:
  - path: %s
    sync-interval: 100ms
    replicas:
      - url: %s
`, dbPath, url))
	src := startDaemon(t, bin, "replicate", "-config", cfg)
	syncDB(t, bin, dbPath, src)
	return db, dbPath, src
}

// TestFollowFromS3 follows a replica on the real S3 server, with
// credentials from the environment as a user would give them, serves
// /healthz, and ends equal to the source.
func TestFollowFromS3(t *testing.T) {
	needSQLite3(t)
	srv := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	url := fmt.Sprintf("s3://%s/bank?endpoint=%s&region=us-east-1&force-path-style=true", testenv.Bucket(t, srv), srv.Endpoint)
	bin := ferryBinary(t)
	dir := t.TempDir()
	db, dbPath, src := startBankSource(t, bin, dir, url)
	followerPath := filepath.Join(dir, "follower.db")
	addr := freeAddr(t)
	// The follower reaches the store through a proxy that counts its
	// requests by kind.
	counter := newCountingProxy(t, srv.Endpoint)
	viaProxy := fmt.Sprintf("s3://%s/bank?endpoint=%s&region=us-east-1&force-path-style=true", strings.SplitN(strings.TrimPrefix(url, "s3://"), "/", 2)[0], counter.URL)
	f := startDaemonUntil(t, bin, "ferry is following", "follow", "-interval", "50ms", "-addr", addr, "-healthz-max-lag", "30s", viaProxy, followerPath)
	readers := startBankReaders(t, followerPath, 2)
	w := startBank(t, db)
	waitFor(t, 120*time.Second, "200 transfers", func() bool { return w.n.Load() >= 200 })
	w.stop(t)
	syncDB(t, bin, dbPath, src)
	want := dbStatus(t, bin, dbPath).TXID
	waitFor(t, 60*time.Second, fmt.Sprintf("the follower to reach txid %d", want), func() bool { return followStatus(t, addr).TXID == want })
	readers.stop(t)
	waitFor(t, 10*time.Second, "/healthz to answer 200", func() bool { code, _ := healthz(t, addr); return code == http.StatusOK })
	metrics := get(t, "http://"+addr+"/metrics")
	if !strings.Contains(metrics, fmt.Sprintf("ferry_follow_applied_txid %d", want)) {
		t.Fatalf("/metrics does not show txid %d", want)
	}
	// Idle: one GET of the next change set's key a poll, and no LIST.
	counter.reset()
	waitFor(t, 60*time.Second, "40 idle polls", func() bool { return counter.count()["get"] >= 40 })
	if got := counter.count(); got["list"] != 0 || got["other"] != 0 {
		t.Fatalf("the idle follower made %v; want GETs alone", got)
	}
	t.Logf("idle follower: %v in %d polls", counter.count(), counter.count()["get"])
	f.stop(t)
	integrityOK(t, followerPath)
	if got, want := sha3sum(t, followerPath), sha3sum(t, dbPath); got != want {
		t.Fatalf("the follower has hash %s, the source %s", got, want)
	}
}

// TestFollowEncrypted follows a replica written with encryption on: with
// the key it ends equal to the source; without it, it fails in one line
// that says so.
func TestFollowEncrypted(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if r := runBin(t, bin, "keygen", "-o", keyFile); r.code != 0 {
		t.Fatalf("keygen: %s", r.stderr)
	}
	url := "file://" + filepath.Join(dir, "replica")
	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body BLOB)")
	repl := startReplicate(t, bin, dbPath, url, "-key-file", keyFile)
	mustExec(t, db, "INSERT INTO notes (body) VALUES (randomblob(100000))")
	if r := runBin(t, bin, "sync", "-timeout", "60s", dbPath); r.code != 0 {
		t.Fatalf("sync: %s (daemon: %s)", r.stderr, repl.stderr.String())
	}

	followerPath := filepath.Join(dir, "follower.db")
	r := runBin(t, bin, "-log-level", "error", "follow", url, followerPath)
	// The words are seal's, as ferry restore says them; the follower's
	// part is one line, exit 1, and nothing left at DB_PATH.
	if r.code != 1 || !strings.Contains(r.stderr, "key") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("follow of an encrypted replica without its key: exit %d, %q", r.code, r.stderr)
	}
	if _, err := os.Stat(followerPath); !os.IsNotExist(err) {
		t.Fatalf("a follow that failed left %s: %v", followerPath, err)
	}
	addr := freeAddr(t)
	f := startDaemonUntil(t, bin, "ferry is following", "follow", "-interval", "50ms", "-addr", addr, "-key-file", keyFile, url, followerPath)
	for i := range 20 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (randomblob(?))", 1000*i)
	}
	mustExec(t, db, "DELETE FROM notes WHERE id % 3 = 0")
	if r := runBin(t, bin, "sync", "-timeout", "60s", dbPath); r.code != 0 {
		t.Fatalf("sync: %s", r.stderr)
	}
	want := dbStatus(t, bin, dbPath).TXID
	waitFor(t, 60*time.Second, fmt.Sprintf("the follower to reach txid %d", want), func() bool { return followStatus(t, addr).TXID == want })
	f.stop(t)
	if got, want := sha3sum(t, followerPath), sha3sum(t, dbPath); got != want {
		t.Fatalf("the follower has hash %s, the source %s", got, want)
	}
}

// TestFollowBadInput: what ferry follow says, in one line, about input
// it cannot work with.
func TestFollowBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "follower.db")
	wantFailure(t, runFerry(t, "follow", "-healthz-max-lag", "0", "file://"+empty, out), 2,
		`ferry follow: invalid value "0" for flag -healthz-max-lag: must be positive`)
	wantFailure(t, runFerry(t, "follow", "-interval", "-1s", "file://"+empty, out), 2,
		`ferry follow: invalid value "-1s" for flag -interval: must be positive`)
	wantFailure(t, runFerry(t, "follow", "file://"+filepath.Join(dir, "nope"), out), 1,
		"ferry follow: replica file://"+filepath.Join(dir, "nope")+": no such directory")
	wantFailure(t, runFerry(t, "follow", "-addr", "256.0.0.1:1", "file://"+empty, out), 1,
		"ferry follow: listen on 256.0.0.1:1: ")
	wantFailure(t, runFerry(t, "follow", "file://"+empty, out), 1,
		"ferry follow: restore "+out+" from file://"+empty+": ")
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("a follow that failed left files behind: %v", entries)
	}
}

var appliedLag = regexp.MustCompile(`msg="applied transaction" txid=\d+ lag=(\S+)`)

// appliedLags returns the lag of each transaction a follower's log says
// it applied: from its commit at the source to its commit in the
// follower.
func appliedLags(t *testing.T, log string) []time.Duration {
	t.Helper()
	var out []time.Duration
	for _, m := range appliedLag.FindAllStringSubmatch(log, -1) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("lag %q: %v", m[1], err)
		}
		out = append(out, d)
	}
	return out
}

func followStatus(t *testing.T, addr string) follow.Status {
	t.Helper()
	var st follow.Status
	body := get(t, "http://"+addr+"/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v: %q", err, body)
	}
	return st
}

// bank moves money between accounts, one transfer per transaction, until
// stopped; now and then a transfer carries a large memo, which grows the
// database, and once a schema change happens in the middle.
type bank struct {
	n    atomic.Int64
	quit chan struct{}
	done chan error
}

func startBank(t *testing.T, db *sql.DB) *bank {
	b := &bank{quit: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		b.done <- b.run(db)
	}()
	t.Cleanup(func() {
		select {
		case <-b.quit:
		default:
			close(b.quit)
			<-b.done
		}
	})
	return b
}

func (b *bank) run(db *sql.DB) error {
	for i := 0; ; i++ {
		select {
		case <-b.quit:
			return nil
		case <-time.After(3 * time.Millisecond):
		}
		if i == 500 {
			if _, err := db.Exec("CREATE INDEX transfers_src ON transfers (src)"); err != nil {
				return err
			}
		}
		src, dst := 1+rand.IntN(bankAccounts), 1+rand.IntN(bankAccounts)
		amount := rand.IntN(50)
		memo := 16
		if i%50 == 0 {
			memo = 20000
		}
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{"UPDATE accounts SET balance = balance - ? WHERE id = ?", []any{amount, src}},
			{"UPDATE accounts SET balance = balance + ? WHERE id = ?", []any{amount, dst}},
			{"INSERT INTO transfers (src, dst, amount, memo) VALUES (?, ?, ?, randomblob(?))", []any{src, dst, amount, memo}},
		} {
			if _, err := tx.Exec(q.sql, q.args...); err != nil {
				tx.Rollback()
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		b.n.Add(1)
	}
}

func (b *bank) stop(t *testing.T) {
	t.Helper()
	close(b.quit)
	if err := <-b.done; err != nil {
		t.Fatalf("a transfer failed: %v", err)
	}
}

// bankReaders run sqlite3 processes that read the follower's database in
// a loop and record any read that fails or breaks the invariant, and how
// long each took.
//
// They set a busy timeout, as any application reading a WAL database
// beside other processes must: a sqlite3 process that closes tries to
// become the last connection (to checkpoint and remove the WAL), and holds
// the database's PENDING lock for that instant, in which another reader
// opening the database gets SQLITE_BUSY at once without one. That is
// between readers, and happens with no follower at all.
type bankReaders struct {
	quit  chan struct{}
	wg    sync.WaitGroup
	reads atomic.Int64
	mu    sync.Mutex
	bad   []string
	took  []time.Duration
}

func startBankReaders(t *testing.T, path string, n int) *bankReaders {
	r := &bankReaders{quit: make(chan struct{})}
	want := fmt.Sprintf("%d|%d", bankAccounts, bankAccounts*bankBalance)
	for range n {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for {
				select {
				case <-r.quit:
					return
				default:
				}
				start := time.Now()
				out, err := exec.Command("sqlite3", "-cmd", ".timeout 10000", path, "SELECT count(*), sum(balance) FROM accounts").CombinedOutput()
				took := time.Since(start)
				got := strings.TrimSpace(string(out))
				r.mu.Lock()
				r.took = append(r.took, took)
				if err != nil || got != want {
					r.bad = append(r.bad, fmt.Sprintf("read %q (%v) after %s", got, err, took))
				}
				r.mu.Unlock()
				r.reads.Add(1)
			}
		}()
	}
	t.Cleanup(func() {
		select {
		case <-r.quit:
		default:
			close(r.quit)
		}
		r.wg.Wait()
	})
	return r
}

func (r *bankReaders) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		t.Fatalf("%d of %d reads of the follower broke the invariant; first: %s", len(r.bad), r.reads.Load(), r.bad[0])
	}
}

// stop ends the readers and returns how many reads there were and the
// p99 and longest time one took, a whole sqlite3 process included.
func (r *bankReaders) stop(t *testing.T) (reads int64, p99, longest time.Duration) {
	t.Helper()
	close(r.quit)
	r.wg.Wait()
	r.check(t)
	slices.Sort(r.took)
	return r.reads.Load(), r.took[len(r.took)*99/100], r.took[len(r.took)-1]
}

// countingProxy is a reverse proxy in front of the S3 server that counts
// requests: object GETs, LISTs (a GET of the bucket with list-type) and
// anything else.
type countingProxy struct {
	*httptest.Server
	mu sync.Mutex
	n  map[string]int
}

func newCountingProxy(t *testing.T, upstream string) *countingProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{n: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := "other"
		switch {
		case r.Method == http.MethodGet && r.URL.Query().Has("list-type"):
			kind = "list"
		case r.Method == http.MethodGet && strings.Count(strings.Trim(r.URL.Path, "/"), "/") >= 1:
			kind = "get"
		}
		p.mu.Lock()
		p.n[kind]++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *countingProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n = map[string]int{}
}

func (p *countingProxy) count() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.n)
}
