package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/testenv"
)

// TestRestoreTriesReplicasInOrder gives a database three replicas in its
// config: an S3 server that is down, an empty directory, and the replica
// `ferry replicate` wrote. `ferry restore DB_PATH` must skip the first
// two, saying why, and restore from the third; -replica picks one;
// listing commands take the same one; verify checks them all.
func TestRestoreTriesReplicasInOrder(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		testenv.Missing(t, "the sqlite3 command (Debian package sqlite3)")
	}
	// Credentials in the environment, so that the replica that is down
	// fails on its connection, not on a search for credentials.
	t.Setenv("AWS_ACCESS_KEY_ID", "ferrytest")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "ferrytestsecret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	bin := ferryBinary(t)
	b := buildReplica(t, bin, replicaKinds["file"](t), 3, false)
	dir := t.TempDir()
	down := "s3://ferry-down/app?endpoint=http://127.0.0.1:1&region=us-east-1&force-path-style=true"
	empty := "file://" + t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf("dbs:\n  - path: %s\n    replicas:\n      - %s\n      - %s\n      - %s\n", b.dbPath, down, empty, b.url))

	out := filepath.Join(dir, "out.db")
	r := runBin(t, bin, "restore", "-config", cfg, "-o", out, b.dbPath)
	if r.code != 0 {
		t.Fatalf("restore from the config's replicas: %s", r.stderr)
	}
	for _, want := range []string{
		"ferry restore: skipped: replica 1 of 3 is unreachable: replica " + down,
		"ferry restore: skipped: replica 2 of 3 is empty: " + empty + " holds no snapshot and no change set\n",
		fmt.Sprintf("ferry restore: restoring from replica 3 of 3 of %s (from %s): %s\n", b.dbPath, cfg, b.url),
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("restore did not say %q:\n%s", want, r.stderr)
		}
	}
	integrityOK(t, out)
	if got := sha3sum(t, out); got != b.hashes[b.last] {
		t.Fatalf("restored hash %s, the source had %s", got, b.hashes[b.last])
	}

	// -replica picks one, and a replica picked is not skipped.
	out2 := filepath.Join(dir, "out2.db")
	r = runBin(t, bin, "restore", "-config", cfg, "-replica", empty, "-o", out2, b.dbPath)
	if r.code != 1 || !strings.HasSuffix(r.stderr, empty+": replica holds no snapshot\n") {
		t.Errorf("restore -replica %s: exit %d, %q", empty, r.code, r.stderr)
	}
	r = runBin(t, bin, "restore", "-config", cfg, "-replica", b.url, "-o", out2, b.dbPath)
	if r.code != 0 || !strings.Contains(r.stderr, "restoring from replica 1 of 1") {
		t.Errorf("restore -replica %s: exit %d, %q", b.url, r.code, r.stderr)
	}
	other := "file://" + filepath.Join(dir, "other")
	r = runBin(t, bin, "restore", "-config", cfg, "-replica", other, "-o", filepath.Join(dir, "out3.db"), b.dbPath)
	if r.code != 1 || !strings.Contains(r.stderr, "-replica "+other+" is not a replica of "+b.dbPath) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("restore -replica of another database: exit %d, %q", r.code, r.stderr)
	}

	for _, cmd := range []string{"txids", "snapshots"} {
		r := runBin(t, bin, cmd, "-config", cfg, b.dbPath)
		if r.code != 0 || !strings.Contains(r.stderr, "listing replica 3 of 3") || r.stdout == "" {
			t.Errorf("%s from the config's replicas: exit %d\n%s%s", cmd, r.code, r.stdout, r.stderr)
		}
	}

	// verify checks every replica: two of these fail.
	r = runBin(t, bin, "verify", "-config", cfg, b.dbPath)
	if r.code != 1 || !strings.Contains(lastLine(r.stderr), "2 of 3 replicas of "+b.dbPath+" fail") || !strings.Contains(r.stdout, "OK") {
		t.Errorf("verify of every replica: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, bin, "verify", "-config", cfg, "-replica", b.url, b.dbPath); r.code != 0 {
		t.Errorf("verify -replica %s: exit %d\n%s%s", b.url, r.code, r.stdout, r.stderr)
	}

	// Nothing usable: one line saying why for each.
	cfg2 := writeConfig(t, t.TempDir(), fmt.Sprintf("dbs:\n  - path: %s\n    replicas: [%q, %q]\n", b.dbPath, down, empty))
	r = runBin(t, bin, "restore", "-config", cfg2, "-o", filepath.Join(dir, "out4.db"), b.dbPath)
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "no replica of "+b.dbPath+" could be used: replica 1 of 2 is unreachable") ||
		!strings.Contains(r.stderr, "replica 2 of 2 is empty") {
		t.Errorf("restore with no usable replica: exit %d, %q", r.code, r.stderr)
	}
	empty2 := "file://" + t.TempDir()
	cfg3 := writeConfig(t, t.TempDir(), fmt.Sprintf("dbs:\n  - path: %s\n    replicas: [%q, %q]\n", b.dbPath, empty, empty2))
	r = runBin(t, bin, "restore", "-config", cfg3, "-if-replica-exists", "-o", filepath.Join(dir, "out5.db"), b.dbPath)
	if r.code != 0 || !strings.Contains(r.stderr, "each of the 2 replicas of "+b.dbPath+" holds nothing to restore; nothing to do") {
		t.Errorf("restore -if-replica-exists with only empty replicas: exit %d, %q", r.code, r.stderr)
	}
}

// TestDBPathFromRunningDaemon runs `ferry replicate DB_PATH URL`, with no
// config file: restore, txids, snapshots and verify given DB_PATH must
// find the replica from the daemon, and, once it stops, fail with one
// line saying that neither a config nor a daemon names the replicas.
func TestDBPathFromRunningDaemon(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		testenv.Missing(t, "the sqlite3 command (Debian package sqlite3)")
	}
	for name, newURL := range replicaKinds {
		t.Run(name, func(t *testing.T) {
			bin := ferryBinary(t)
			b := buildReplica(t, bin, newURL(t), 3, true)
			for _, args := range [][]string{{"txids"}, {"snapshots"}, {"verify", "-deep"}} {
				r := runBin(t, bin, append(args, b.dbPath)...)
				if r.code != 0 || r.stdout == "" {
					t.Errorf("%v DB_PATH with a daemon running: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
				}
				if args[0] != "verify" && !strings.Contains(r.stderr, "(from the running daemon): "+b.url) {
					t.Errorf("%v DB_PATH does not say where its replica came from: %q", args, r.stderr)
				}
			}
			out := filepath.Join(t.TempDir(), "out.db")
			r := runBin(t, bin, "restore", "-o", out, b.dbPath)
			if r.code != 0 {
				t.Fatalf("restore DB_PATH with a daemon running: %s", r.stderr)
			}
			integrityOK(t, out)
			if got := sha3sum(t, out); got != b.hashes[b.last] {
				t.Fatalf("restored hash %s, the source had %s", got, b.hashes[b.last])
			}

			b.repl.stop()
			for _, cmd := range []string{"restore", "txids", "snapshots", "verify"} {
				args := []string{cmd, b.dbPath}
				if cmd == "restore" {
					args = []string{cmd, "-o", filepath.Join(t.TempDir(), "x.db"), b.dbPath}
				}
				r := runBin(t, bin, args...)
				want := fmt.Sprintf("ferry %s: cannot tell where %s is replicated: no config file at /etc/ferry.yml, and no ferry daemon is replicating %s (nothing answers on %s); pass -config PATH, or a REPLICA_URL in place of DB_PATH\n",
					cmd, b.dbPath, b.dbPath, daemon.SocketPath(b.dbPath))
				if r.code != 1 || r.stderr != want {
					t.Errorf("%s DB_PATH with no daemon and no config: exit %d\n%q\nwant\n%q", cmd, r.code, r.stderr, want)
				}
			}
		})
	}
}
