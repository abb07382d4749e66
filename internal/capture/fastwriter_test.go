package capture

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// envFor is how long the inserter child writes.
const envFor = "FERRY_CAPTURE_TEST_FOR"

// inserterChild is an application at full speed, in a process of its own:
// 1-row transactions with no pause for as long as envFor says, then it
// prints how many it committed and closes its connection.
func inserterChild() {
	d, err := time.ParseDuration(os.Getenv(envFor))
	if err != nil {
		childFail("%s: %v", envFor, err)
	}
	db, err := sql.Open("sqlite", sqliteURI(os.Getenv(envDB), "_pragma=busy_timeout(10000)", "_pragma=synchronous(NORMAL)"))
	if err != nil {
		childFail("open: %v", err)
	}
	db.SetMaxOpenConns(1)
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		if _, err := db.Exec("INSERT INTO t(v) VALUES(randomblob(100))"); err != nil {
			childFail("insert %d: %v", n+1, err)
		}
	}
	if err := db.Close(); err != nil {
		childFail("close: %v", err)
	}
	fmt.Println(n)
}

// TestEveryCommitOfAFastWriter has another process commit as fast as it
// can while ferry replicates, then stop and close its connection, as
// applications do. Ferry must give every commit a txid of its own, and
// find the last ones by itself, without a Sync to prompt it: the log
// turns over many times a second here, the case where a capture that
// skips or merges a transaction would show.
func TestEveryCommitOfAFastWriter(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	store := memstore.New()
	o := testOptions(dir, db, map[string]objstore.Store{"mem://fast": store})
	o.CheckpointPages = 1000
	// The defaults, as a sidecar runs.
	o.PollInterval, o.SyncInterval = 50*time.Millisecond, time.Second
	r := startReplicator(t, o)
	base := r.sync(t)
	n := runInserter(t, db, "4s")
	last := checkEveryCommit(t, r, store, dir, db, base, n)
	t.Logf("%d commits in 4 s, each its own txid (%d..%d)", n, base+1, last)
}

// runInserter runs inserterChild on db for d and returns how many
// commits it made.
func runInserter(t *testing.T, db, d string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=inserter", envDB+"="+db, envFor+"="+d)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("inserter: %v: %s", err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("inserter said %q", out)
	}
	return n
}

// checkEveryCommit waits for r to capture the n commits made after txid
// base, each as a txid of its own, without a Sync to prompt it, then
// checks that the latest restore from store is the live database db, and
// returns its txid.
func checkEveryCommit(t *testing.T, r *replicator, store objstore.Store, dir, db string, base uint64, n int) uint64 {
	t.Helper()
	want := base + uint64(n)
	for end := time.Now().Add(30 * time.Second); r.Status().TXID < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d commits: ferry captured up to txid %d, want %d, 30 s after the writer stopped", n, r.Status().TXID, want)
		}
	}
	if got := r.Status().TXID; got != want {
		t.Fatalf("%d commits became txids %d..%d, want up to %d", n, base+1, got, want)
	}
	last := r.sync(t)
	out, res := restoreAt(t, store, 0, dir)
	defer os.Remove(out)
	if got, live := sha3(t, out), sha3(t, db); got != live || res.TXID != last {
		t.Fatalf("latest restore is txid %d with hash %s; want txid %d, hash %s", res.TXID, got, last, live)
	}
	return last
}
