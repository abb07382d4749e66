package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/testenv"
)

// TestSIGTERMShipsTheLastCommits stops `ferry replicate DB URL` the way a
// container runtime or systemd does, right after 30 commits: the daemon
// must capture them, ship them, say what the target holds, and exit 0;
// the replica then restores all 30.
func TestSIGTERMShipsTheLastCommits(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	url := "file://" + filepath.Join(dir, "replica")
	d := startDaemon(t, bin, "replicate", dbPath, url)
	syncDB(t, bin, dbPath, d)
	for i := range 30 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("note %d", i))
	}
	d.stop(t)
	if !d.logged("stopped; every target holds the last transaction") {
		t.Fatalf("no line saying what the targets hold:\n%s", d.log())
	}
	for _, line := range strings.Split(d.log(), "\n") {
		if strings.Count(line, " db=") > 1 {
			t.Fatalf("a log line names the database twice: %s", line)
		}
	}
	out := filepath.Join(dir, "restored.db")
	if r := runBin(t, bin, "restore", "-o", out, url); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	integrityOK(t, out)
	if got := rowCount(t, out); got != 30 {
		t.Fatalf("the replica holds %d of the 30 rows committed before SIGTERM", got)
	}
	if got, want := sha3sum(t, out), sha3sum(t, dbPath); got != want {
		t.Fatalf("restore hash %s, source %s", got, want)
	}
}

// TestSIGTERMWithTheStoreDownFailsAfterTheTimeout stops the daemon while
// its store is down: it must give up after -shutdown-timeout, say which
// target lacks what, and exit non-zero; what it could not ship stays in
// the spool and goes out on the next start.
func TestSIGTERMWithTheStoreDownFailsAfterTheTimeout(t *testing.T) {
	needSQLite3(t)
	srv := testenv.StartPrivateS3(t)
	bucket := testenv.Bucket(t, srv.S3Server)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bin := ferryBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	url := fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint)
	d := startDaemon(t, bin, "replicate", "-shutdown-timeout", "2s", dbPath, url)
	syncDB(t, bin, dbPath, d)
	srv.Stop()
	for i := range 30 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("note %d", i))
	}
	start := time.Now()
	d.signal(syscall.SIGTERM)
	<-d.done
	if d.err == nil {
		t.Fatalf("ferry exited 0 with 30 commits unshipped:\n%s", d.log())
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("stopping took %s with a 2s shutdown timeout", took)
	}
	lines := strings.Split(strings.TrimSpace(d.log()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "not shipped") || !strings.Contains(last, "holds txid") {
		t.Fatalf("last line %q does not say what was not shipped", last)
	}

	// The next start ships what the spool kept.
	srv.Start()
	d = startDaemon(t, bin, "replicate", dbPath, url)
	syncDB(t, bin, dbPath, d)
	out := filepath.Join(dir, "restored.db")
	if r := runBin(t, bin, "restore", "-o", out, url); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	if got, want := sha3sum(t, out), sha3sum(t, dbPath); got != want {
		t.Fatalf("restore hash %s, source %s", got, want)
	}
}

// TestExecWithoutFilesExitsOnceFlushed runs -exec with a config that has a
// database and no inbox: once the application exits, ferry must ship what
// it committed and exit at once, not wait out a timeout for a files spool
// that does not exist.
func TestExecWithoutFilesExitsOnceFlushed(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	db.Close()
	replica := filepath.Join(dir, "replica")
	cfg := writeConfig(t, dir, fmt.Sprintf("dbs:\n  - path: %s\n    replicas:\n      - url: file://%s\n", dbPath, replica))
	app := fmt.Sprintf(`sqlite3 %s "PRAGMA busy_timeout=5000; INSERT INTO notes (body) VALUES ('from the child'); INSERT INTO notes (body) VALUES ('and again');"`, dbPath)
	start := time.Now()
	cmd := exec.Command(bin, "-log-level", "info", "replicate", "-config", cfg, "-exec", app)
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if code := exitCode(t, err); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	// The old drain check waited its whole 30 s timeout here.
	if took > 20*time.Second {
		t.Fatalf("ferry took %s to exit after its child", took)
	}
	if !strings.Contains(string(out), "stopped; every target holds the last transaction") {
		t.Fatalf("no line saying what was flushed:\n%s", out)
	}
	restored := filepath.Join(dir, "restored.db")
	if r := runBin(t, bin, "restore", "-o", restored, "file://"+replica); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	if got := rowCount(t, restored); got != 2 {
		t.Fatalf("the replica holds %d of the child's 2 rows", got)
	}
}
