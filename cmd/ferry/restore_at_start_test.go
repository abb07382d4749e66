package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReplicateRestoresAMissingDatabase starts `ferry replicate
// -restore-if-db-not-exists` on an empty disk, as a redeployed machine
// would: it must restore the newest state, carry the same history on
// (no new snapshot, no gap, txids going on from where they were), and a
// restore after more writes must equal the source.
func TestReplicateRestoresAMissingDatabase(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	replica := filepath.Join(t.TempDir(), "replica")
	url := "file://" + replica
	dbPath := filepath.Join(dir, "app.db")

	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	d := startDaemon(t, bin, "replicate", dbPath, url)
	for i := range 50 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("first life %d", i))
	}
	syncDB(t, bin, dbPath, d)
	before := dbStatus(t, bin, dbPath)
	d.stop(t)
	db.Close()
	manifests := countFiles(t, filepath.Join(replica, "snapshots"))

	// The machine is gone: nothing of the database or its spool is left.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	d = startDaemon(t, bin, "replicate", "-restore-if-db-not-exists", dbPath, url)
	// The database's replicator opens after the daemon says it runs.
	waitFor(t, time.Minute, "a line saying the database was restored and its history carried on", func() bool {
		return d.logged("restored it") && d.logged("carrying on the history")
	})
	integrityOK(t, dbPath)
	if got := rowCount(t, dbPath); got != 50 {
		t.Fatalf("the restored database has %d of 50 rows", got)
	}
	db = openAppDB(t, dbPath)
	for i := range 50 {
		mustExec(t, db, "INSERT INTO notes (body) VALUES (?)", fmt.Sprintf("second life %d", i))
	}
	syncDB(t, bin, dbPath, d)
	after := dbStatus(t, bin, dbPath)
	if after.TXID != before.TXID+50 {
		t.Fatalf("txids went from %d to %d over 50 commits: the history was not carried on", before.TXID, after.TXID)
	}
	if n := countFiles(t, filepath.Join(replica, "snapshots")); n != manifests {
		t.Fatalf("%d snapshot manifests after the restart, %d before: the restart uploaded a snapshot again", n, manifests)
	}
	txids := runBin(t, bin, "txids", url)
	if txids.code != 0 || strings.Contains(txids.stdout, "gap") || strings.Count(strings.TrimSpace(txids.stdout), "\n") != 0 {
		t.Fatalf("txids after the restart should be one range: %s %s", txids.stdout, txids.stderr)
	}
	out := filepath.Join(t.TempDir(), "restored.db")
	if r := runBin(t, bin, "restore", "-o", out, url); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	integrityOK(t, out)
	if got, want := sha3sum(t, out), sha3sum(t, dbPath); got != want {
		t.Fatalf("restore hash %s, source %s", got, want)
	}
}

// TestRestoreAtStartWaitsForAFirstDatabase covers the very first start of
// a deployment: no database and an empty replica. ferry must wait for the
// application to create the database, then replicate it.
func TestRestoreAtStartWaitsForAFirstDatabase(t *testing.T) {
	needSQLite3(t)
	bin := ferryBinary(t)
	dir := t.TempDir()
	url := "file://" + filepath.Join(t.TempDir(), "replica")
	dbPath := filepath.Join(dir, "app.db")
	d := startDaemonUntil(t, bin, "waiting for the application to create it", "replicate", "-restore-if-db-not-exists", dbPath, url)
	db := openAppDB(t, dbPath)
	mustExec(t, db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
	mustExec(t, db, "INSERT INTO notes (body) VALUES ('hello')")
	waitFor(t, 60*time.Second, "the daemon to replicate the new database", func() bool { return d.logged("ferry is replicating") })
	syncDB(t, bin, dbPath, d)
	out := filepath.Join(t.TempDir(), "restored.db")
	if r := runBin(t, bin, "restore", "-o", out, url); r.code != 0 {
		t.Fatalf("restore: %s", r.stderr)
	}
	if got, want := sha3sum(t, out), sha3sum(t, dbPath); got != want {
		t.Fatalf("restore hash %s, source %s", got, want)
	}
}
