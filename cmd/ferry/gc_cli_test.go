package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGCDryRunThenRun checks what `ferry gc` tells a user: -dry-run lists
// what would go with the bytes it would free and deletes nothing; the run
// deletes exactly that and says so; the replica still verifies and
// restores the latest state.
func TestGCDryRunThenRun(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	replica := filepath.Join(dir, "replica")
	url := "file://" + replica
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body BLOB)")
	cfg := writeConfig(t, dir, fmt.Sprintf("dbs:\n  - path: %s\n    snapshot-interval: 1s\n    retention: 1s\n    replicas:\n      - url: %s\n", dbPath, url))
	d := startDaemon(t, bin, "replicate", "-config", cfg)
	// Several snapshots, a second apart, each of different rows.
	for round := range 4 {
		before := dbStatus(t, bin, dbPath).Targets[0].Snapshot
		for i := range 20 {
			mustExec(t, db, "INSERT OR REPLACE INTO notes (id, body) VALUES (?, randomblob(3000))", i, round)
		}
		syncDB(t, bin, dbPath, d)
		waitFor(t, 30*time.Second, "a new snapshot", func() bool { return dbStatus(t, bin, dbPath).Targets[0].Snapshot > before })
	}
	d.stop(t)
	files := countFiles(t, replica)
	// Retention is measured in time: once the newest snapshot is older
	// than the retention, what gc keeps no longer moves between the dry
	// run and the run.
	time.Sleep(1500 * time.Millisecond)

	dry := runBin(t, bin, "gc", "-dry-run", "-retention", "1s", "-grace", "7s", url)
	if dry.code != 0 || !strings.Contains(dry.stdout, "would delete snapshots/") || !strings.Contains(dry.stdout, "bytes") {
		t.Fatalf("gc -dry-run: exit %d\n%s%s", dry.code, dry.stdout, dry.stderr)
	}
	if n := countFiles(t, replica); n != files {
		t.Fatalf("a dry run changed the replica: %d files, %d before", n, files)
	}
	run := runBin(t, bin, "gc", "-retention", "1s", "-grace", "7s", url)
	if run.code != 0 || !strings.Contains(run.stdout, "deleted snapshots/") {
		t.Fatalf("gc: exit %d\n%s%s", run.code, run.stdout, run.stderr)
	}
	lines := func(out, prefix string) (n int) {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, prefix) {
				n++
			}
		}
		return n
	}
	announced := lines(dry.stdout, "would delete ")
	if went := lines(run.stdout, "deleted "); went != announced || went == 0 {
		t.Fatalf("the dry run announced %d objects, the run deleted %d:\n%s\n%s", announced, went, dry.stdout, run.stdout)
	}
	if n := countFiles(t, replica); n >= files {
		t.Fatalf("gc deleted nothing: %d files, %d before", n, files)
	}
	if r := runBin(t, bin, "verify", "-deep", url); r.code != 0 {
		t.Fatalf("verify after gc: %s %s", r.stdout, r.stderr)
	}
	out := filepath.Join(t.TempDir(), "restored.db")
	if r := runBin(t, bin, "restore", "-o", out, url); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	if got, want := sha3sum(t, out), sha3sum(t, dbPath); got != want {
		t.Fatalf("restore hash %s, source %s", got, want)
	}
	if r := runBin(t, bin, "gc", "-grace", "1s", url); r.code == 0 || !strings.Contains(r.stderr, "too short") {
		t.Fatalf("gc with a grace under the reprieve window: exit %d %s", r.code, r.stderr)
	}
}
