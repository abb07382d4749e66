package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sqlite3Exec runs SQL on the database at path with the sqlite3 command,
// as an application in another process would.
func sqlite3Exec(t *testing.T, path, sql string) {
	t.Helper()
	if out, err := exec.Command("sqlite3", "-cmd", ".timeout 5000", path, sql).CombinedOutput(); err != nil {
		t.Fatalf("sqlite3 %s: %v: %s", path, err, out)
	}
}

// TestReplicateDirectoryAndReload runs the daemon on a dir entry as a user
// would: 'ferry sync' and 'ferry status' find it through the directory's
// socket, a restore of each database equals it, and SIGHUP takes a
// directory added to the config, and keeps running on a config that no
// longer loads.
func TestReplicateDirectoryAndReload(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	root := t.TempDir()
	one, two, replica := filepath.Join(root, "one"), filepath.Join(root, "two"), filepath.Join(root, "replica")
	for _, d := range []string{one, two} {
		os.Mkdir(d, 0o755)
	}
	for _, db := range []string{filepath.Join(one, "a.db"), filepath.Join(one, "b.db"), filepath.Join(two, "c.db")} {
		sqlite3Exec(t, db, "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES('first')")
	}
	entry := func(dir, sub string) string {
		return fmt.Sprintf("  - dir: %s\n    watch: true\n    replicas: [file://%s/%s]\n", dir, replica, sub)
	}
	cfg := writeConfig(t, root, "dbs:\n"+entry(one, "one"))
	p := startGroup(t, bin, "ferry is replicating", "replicate", "-config", cfg)
	defer p.stop(t)

	a := filepath.Join(one, "a.db")
	sqlite3Exec(t, a, "INSERT INTO t VALUES('second')")
	if r := runBin(t, bin, "sync", a); r.code != 0 {
		t.Fatalf("ferry sync %s: %s\n%s", a, r.stderr, p.out.String())
	}
	out := filepath.Join(root, "restored-a.db")
	if r := runBin(t, bin, "restore", "-o", out, "file://"+replica+"/one/a.db"); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	if got, want := sha3sum(t, out), sha3sum(t, a); got != want {
		t.Fatalf("a.db restored as %s, source %s", got, want)
	}
	r := runBin(t, bin, "status", "-config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, a) || !strings.Contains(r.stdout, filepath.Join(one, "b.db")) {
		t.Fatalf("status -config: %d %s %s", r.code, r.stdout, r.stderr)
	}

	// A second directory, taken at SIGHUP.
	writeConfig(t, root, "dbs:\n"+entry(one, "one")+entry(two, "two"))
	p.cmd.Process.Signal(syscall.SIGHUP)
	c := filepath.Join(two, "c.db")
	waitFor(t, 30*time.Second, "the reload to take the second directory", func() bool {
		return runBin(t, bin, "status", c).code == 0
	})
	sqlite3Exec(t, c, "INSERT INTO t VALUES('after the reload')")
	if r := runBin(t, bin, "sync", c); r.code != 0 {
		t.Fatalf("ferry sync %s: %s\n%s", c, r.stderr, p.out.String())
	}
	out = filepath.Join(root, "restored-c.db")
	if r := runBin(t, bin, "restore", "-o", out, "file://"+replica+"/two/c.db"); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	if got, want := sha3sum(t, out), sha3sum(t, c); got != want {
		t.Fatalf("c.db restored as %s, source %s", got, want)
	}

	// A config that no longer loads leaves the running one in place.
	writeConfig(t, root, "dbs:\n  - dir: relative/path\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, "the refused reload to be logged", func() bool {
		return strings.Contains(p.out.String(), "the config does not load")
	})
	sqlite3Exec(t, a, "INSERT INTO t VALUES('third')")
	if r := runBin(t, bin, "sync", a); r.code != 0 || p.exited() {
		t.Fatalf("after a refused reload: sync %d %s; exited %v\n%s", r.code, r.stderr, p.exited(), p.out.String())
	}
}
