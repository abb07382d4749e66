package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydb/ferry/internal/spool"
)

// The synopsis is what a reader scans first: every flag a command takes
// belongs in it.
func TestPushSynopsisShowsSpool(t *testing.T) {
	r := runFerry(t, "push", "-h")
	synopsis, _, _ := strings.Cut(r.stdout, "\n")
	if r.code != 0 || !strings.Contains(synopsis, "[-spool DIR]") {
		t.Errorf("exit %d, synopsis %q lacks [-spool DIR]", r.code, synopsis)
	}
}

// makeSpool creates an empty spool in dir.
func makeSpool(t *testing.T, dir string) {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
}

// Given the spool root that -spool and spool: name, fsck names the spools
// below it; given a directory with none, it says what it expected.
func TestSpoolFsckOnRootNamesTheSpoolsBelow(t *testing.T) {
	root := t.TempDir()
	files := filepath.Join(root, "files")
	dbSpool := filepath.Join(root, "app.db-0a1b2c3d")
	makeSpool(t, files)
	makeSpool(t, dbSpool)
	if err := os.Mkdir(filepath.Join(root, "other"), 0o700); err != nil {
		t.Fatal(err)
	}
	wantFailure(t, runFerry(t, "spool", "fsck", root), 1, "ferry spool: check spool "+root+": not a spool directory",
		"run 'ferry spool fsck' on one of "+dbSpool+", "+files+"\n")

	empty := t.TempDir()
	wantFailure(t, runFerry(t, "spool", "fsck", empty), 1, "ferry spool: check spool "+empty+": not a spool directory",
		"expected one spool: ROOT/files, a database's .DB_NAME-ferry or ROOT/DB_NAME-HASH")

	if r := runFerry(t, "spool", "fsck", files); r.code != 0 {
		t.Errorf("fsck of a spool: exit %d, stderr %q", r.code, r.stderr)
	}
}

// JSON carries paths and URLs as they are, not HTML-escaped: a script
// that compares a path or URL with a string must find it.
func TestSpoolFsckJSONKeepsPathsAsTheyAre(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a&b<c>")
	makeSpool(t, dir)
	r := runFerry(t, "spool", "fsck", "-json", dir)
	if r.code != 0 || !strings.Contains(r.stdout, `"`+dir+`"`) {
		t.Errorf("exit %d, JSON does not hold %s as it is:\n%s", r.code, dir, r.stdout)
	}
}

// A replicate that fails to start leaves no spool directory it created,
// whichever database failed, and keeps one that was there before.
func TestFailedStartRemovesSpoolsItCreated(t *testing.T) {
	bin := ferryBinary(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	mustExec(t, openAppDB(t, good), "CREATE TABLE t (x)")
	notWAL := filepath.Join(dir, "plain.db")
	if err := os.WriteFile(notWAL, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	spoolOf := func(db string) string { return filepath.Join(dir, "."+filepath.Base(db)+"-ferry") }

	r := runBin(t, bin, "replicate", notWAL, "file://"+filepath.Join(dir, "r1"))
	if r.code != 1 || !strings.Contains(r.stderr, "not in WAL mode") {
		t.Fatalf("replicate of a database not in WAL mode: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Lstat(spoolOf(notWAL)); err == nil {
		t.Errorf("the failed start left %s", spoolOf(notWAL))
	}

	// The good database's replicator has started by the time the second
	// one fails: its spool goes too.
	cfg := writeConfig(t, dir, "dbs:\n  - path: "+good+"\n    replicas: [file://"+filepath.Join(dir, "r2")+"]\n"+
		"  - path: "+notWAL+"\n    replicas: [file://"+filepath.Join(dir, "r3")+"]\n")
	r = runBin(t, bin, "replicate", "-config", cfg)
	if r.code != 1 || !strings.Contains(r.stderr, "not in WAL mode") {
		t.Fatalf("replicate -config: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, db := range []string{good, notWAL} {
		if _, err := os.Lstat(spoolOf(db)); err == nil {
			t.Errorf("the failed start left %s", spoolOf(db))
		}
	}

	if err := os.MkdirAll(spoolOf(notWAL), 0o700); err != nil {
		t.Fatal(err)
	}
	runBin(t, bin, "replicate", notWAL, "file://"+filepath.Join(dir, "r1"))
	if _, err := os.Lstat(spoolOf(notWAL)); err != nil {
		t.Errorf("a failed start removed the spool directory that was there before it: %v", err)
	}
}

// `status -json` prints replica URLs as they are: & in an s3 URL's query
// (or a file URL's path) must not come out as \u0026.
func TestStatusJSONKeepsURLsAsTheyAre(t *testing.T) {
	bin := ferryBinary(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	mustExec(t, openAppDB(t, db), "CREATE TABLE t (x)")
	url := "file://" + filepath.Join(dir, "rep&lica")
	startReplicate(t, bin, db, url)
	r := runBin(t, bin, "status", "-json", db)
	if r.code != 0 || !strings.Contains(r.stdout, `"`+url+`"`) {
		t.Errorf("exit %d, stderr %q; JSON does not hold %s as it is:\n%s", r.code, r.stderr, url, r.stdout)
	}
}
