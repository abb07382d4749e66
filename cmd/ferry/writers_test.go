package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestTwoWritersWithoutLease runs two ferries on one replica without a
// lease, as after a failover that left the old primary running: the
// second starts on a missing database, which it restores from the replica
// and carries on, while the first goes on writing too. Their next change
// sets collide on the first one's key; the second must stop replicating
// to that target with one clear error naming the first, show it in its
// status, and keep running without retrying; the first goes on, and the
// replica restores to the first one's database.
func TestTwoWritersWithoutLease(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	db1, db2 := filepath.Join(dir, "one.db"), filepath.Join(dir, "two.db")
	app1 := openAppDB(t, db1)
	mustExec(t, app1, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	for i := range 10 {
		mustExec(t, app1, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("note %d", i))
	}
	url := "file://" + filepath.Join(dir, "replica")
	d1 := startDaemon(t, bin, "replicate", db1, url)
	syncDB(t, bin, db1, d1)

	d2 := startDaemon(t, bin, "replicate", "-restore-if-db-not-exists", db2, url)
	syncDB(t, bin, db2, d2)
	if !d2.logged("restored") {
		t.Fatalf("the second ferry did not restore its missing database:\n%s", d2.log())
	}

	// The first takes the key of the next txid; the second then wants it.
	mustExec(t, app1, "INSERT INTO notes (body) VALUES ('first writer goes on')")
	syncDB(t, bin, db1, d1)
	app2 := openAppDB(t, db2)
	mustExec(t, app2, "INSERT INTO notes (body) VALUES ('second writer')")
	if r := runBin(t, bin, "sync", "-timeout", "60s", db2); r.code == 0 || !strings.Contains(r.stderr+r.stdout, "another writer") {
		t.Fatalf("sync of the second writer: exit %d, %q %q; want the conflict\ndaemon log:\n%s", r.code, r.stdout, r.stderr, d2.log())
	}
	st := dbStatus(t, bin, db2).Targets[0]
	if !st.Stopped || !strings.Contains(st.LastError, "another writer") || !strings.Contains(st.LastError, fmt.Sprintf("pid %d", d1.cmd.Process.Pid)) {
		t.Fatalf("the second writer's status %+v does not name the first writer (pid %d)", st, d1.cmd.Process.Pid)
	}
	if n := strings.Count(d2.log(), "target stopped"); n != 1 {
		t.Fatalf("the second writer logged the stop %d times:\n%s", n, d2.log())
	}

	for i := range 5 {
		mustExec(t, app1, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("later %d", i))
	}
	syncDB(t, bin, db1, d1)
	d1.stop(t)
	// The second ferry stops when told, saying why its target lacks what
	// it committed.
	d2.signal(syscall.SIGTERM)
	<-d2.done
	if d2.err == nil || !strings.Contains(d2.log(), "stopped replicating") || strings.Contains(d2.log(), "panic") {
		t.Fatalf("the second ferry exited with %v:\n%s", d2.err, d2.log())
	}
	if r := runBin(t, bin, "verify", url); r.code != 0 {
		t.Fatalf("verify: %s %s", r.stdout, r.stderr)
	}
	out := filepath.Join(dir, "restored.db")
	if r := runBin(t, bin, "restore", "-o", out, url); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	if got, want := sha3sum(t, out), sha3sum(t, db1); got != want {
		t.Fatalf("the replica restores to hash %s; the first writer's database has %s", got, want)
	}
}
