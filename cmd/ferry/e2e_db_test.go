package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/testenv"
)

// sha3sum is the content hash of a database by Debian's sqlite3, an oracle
// ferry did not write.
func sha3sum(t *testing.T, db string) string {
	t.Helper()
	out, err := exec.Command("sqlite3", db, ".sha3sum").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s .sha3sum: %v: %s", db, err, out)
	}
	return strings.TrimSpace(string(out))
}

func integrityOK(t *testing.T, db string) {
	t.Helper()
	out, err := exec.Command("sqlite3", db, "PRAGMA integrity_check").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("integrity_check of %s: %s %v", db, out, err)
	}
}

// TestReplicateSyncRestoreThroughCLI runs the real binary as a user would:
// `ferry replicate DB URL` beside an application that writes, `ferry sync`,
// `ferry status`, then `ferry restore` of the latest state and of an
// earlier txid, `ferry txids`, `ferry snapshots` and `ferry verify -deep`;
// the restores are checked with sqlite3's own hash and integrity check.
func TestReplicateSyncRestoreThroughCLI(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		testenv.Missing(t, "the sqlite3 command (Debian package sqlite3)")
	}
	for name, newURL := range replicaKinds {
		t.Run(name, func(t *testing.T) {
			url := newURL(t)
			bin := ferryBinary(t)
			dir := t.TempDir()
			dbPath := filepath.Join(dir, "app.db")
			db := openAppDB(t, dbPath)
			mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, blob BLOB)")

			repl := startReplicate(t, bin, dbPath, url)

			for i := range 40 {
				mustExec(t, db, "INSERT INTO notes (body, blob) VALUES (?, randomblob(?))", fmt.Sprintf("note %d", i), 100*i)
			}
			r := runBin(t, bin, "sync", "-timeout", "60s", dbPath)
			if r.code != 0 {
				t.Fatalf("sync: %s %s (daemon: %s)", r.stdout, r.stderr, repl.stderr.String())
			}
			var st daemon.StatusReport
			r = runBin(t, bin, "status", "-json", dbPath)
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || len(st.DBs) != 1 {
				t.Fatalf("status: %d %q %q", r.code, r.stdout, r.stderr)
			}
			midTXID := st.DBs[0].TXID
			midHash := sha3sum(t, dbPath)
			if tgt := st.DBs[0].Targets[0]; tgt.Replicated != midTXID {
				t.Fatalf("after sync the target has txid %d of %d", tgt.Replicated, midTXID)
			}

			mustExec(t, db, "UPDATE notes SET body = body || ' (edited)' WHERE id % 3 = 0")
			mustExec(t, db, "DELETE FROM notes WHERE id % 5 = 0")
			mustExec(t, db, "CREATE INDEX notes_body ON notes (body)")
			if r := runBin(t, bin, "sync", "-timeout", "60s", dbPath); r.code != 0 {
				t.Fatalf("sync: %s", r.stderr)
			}
			finalHash := sha3sum(t, dbPath)

			latest := filepath.Join(dir, "latest.db")
			if r := runBin(t, bin, "restore", "-o", latest, url); r.code != 0 {
				t.Fatalf("restore: %s", r.stderr)
			}
			integrityOK(t, latest)
			if got := sha3sum(t, latest); got != finalHash {
				t.Fatalf("latest restore hash %s, source %s", got, finalHash)
			}
			mid := filepath.Join(dir, "mid.db")
			if r := runBin(t, bin, "restore", "-txid", fmt.Sprint(midTXID), "-o", mid, url); r.code != 0 {
				t.Fatalf("restore -txid %d: %s", midTXID, r.stderr)
			}
			integrityOK(t, mid)
			if got := sha3sum(t, mid); got != midHash {
				t.Fatalf("restore to txid %d has hash %s, the source had %s then", midTXID, got, midHash)
			}
			for _, args := range [][]string{{"txids", url}, {"snapshots", url}, {"verify", "-deep", url}} {
				if r := runBin(t, bin, args...); r.code != 0 {
					t.Fatalf("%v: %s %s", args, r.stdout, r.stderr)
				}
			}
		})
	}
}

// replicaKinds makes a new replica URL of each kind the CLI tests cover: a
// directory, and a bucket on the real S3 server.
var replicaKinds = map[string]func(t *testing.T) string{
	"file": func(t *testing.T) string { return "file://" + filepath.Join(t.TempDir(), "replica") },
	"s3": func(t *testing.T) string {
		srv := testenv.S3(t)
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		return fmt.Sprintf("s3://%s/app?endpoint=%s&region=us-east-1&force-path-style=true", testenv.Bucket(t, srv), srv.Endpoint)
	},
}

// openAppDB opens the database at path in WAL mode, as the application
// of the CLI tests.
func openAppDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// replicateProc is a running `ferry replicate DB_PATH URL`.
type replicateProc struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	once   sync.Once
}

// startReplicate runs `ferry replicate [flags] dbPath url` until stop or
// the end of the test, and returns once its control socket is there.
func startReplicate(t *testing.T, bin, dbPath, url string, flags ...string) *replicateProc {
	t.Helper()
	args := append(append([]string{"-log-level", "warn", "replicate"}, flags...), dbPath, url)
	p := &replicateProc{cmd: exec.Command(bin, args...)}
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	waitForSocket(t, dbPath, &p.stderr)
	return p
}

// stop ends the daemon as a service manager would, and waits for it.
func (p *replicateProc) stop() {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
	})
}

func waitForSocket(t *testing.T, dbPath string, stderr *bytes.Buffer) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(daemon.SocketPath(dbPath)); err == nil {
			return
		}
	}
	t.Fatalf("daemon never opened its control socket: %s", stderr.String())
}

type binResult struct {
	code           int
	stdout, stderr string
}

func runBin(t *testing.T, bin string, args ...string) binResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return binResult{code: exitCode(t, err), stdout: out.String(), stderr: errb.String()}
}
