package ferry_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/ferrydb/ferry"
	"github.com/ferrydb/ferry/internal/config"
)

// walDB creates an empty database in WAL mode at path.
func walDB(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLibraryReplicateSyncRestore uses the package as an embedding program
// would: replicate, commit, Sync, restore the latest state and an earlier
// transaction.
func TestLibraryReplicateSyncRestore(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	url := "file://" + filepath.Join(dir, "replica")
	ctx := context.Background()
	r, err := ferry.Replicate(ctx, src, []string{url}, ferry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := db.Exec("INSERT INTO t (v) VALUES ('x')"); err != nil {
			t.Fatal(err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	mid, err := r.Sync(sctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		db.Exec("INSERT INTO t (v) VALUES ('y')")
	}
	if _, err := r.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.Targets[0].Replicated != st.TXID {
		t.Fatalf("after Sync the replica has txid %d of %d", st.Targets[0].Replicated, st.TXID)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	latest := filepath.Join(dir, "latest.db")
	if _, err := ferry.Restore(ctx, url, latest, ferry.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, latest); n != 15 {
		t.Fatalf("latest restore has %d rows, want 15", n)
	}
	old := filepath.Join(dir, "old.db")
	res, err := ferry.Restore(ctx, url, old, ferry.RestoreOptions{TXID: mid})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, old); n != 10 || res.TXID != mid {
		t.Fatalf("restore to txid %d: %d rows at txid %d, want 10", mid, n, res.TXID)
	}
	if _, err := ferry.Restore(ctx, url, old, ferry.RestoreOptions{}); err == nil {
		t.Fatal("restore over an existing file succeeded")
	}
}

func TestLibraryRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := ferry.Replicate(context.Background(), filepath.Join(dir, "missing.db"), []string{"file://" + dir + "/r"}, ferry.Options{}); err == nil {
		t.Fatal("replicating a missing database succeeded")
	}
	if _, err := ferry.Replicate(context.Background(), filepath.Join(dir, "x.db"), nil, ferry.Options{}); err == nil {
		t.Fatal("replicating to no replica succeeded")
	}
}

// The zero Options replicate as `ferry replicate` does: with the same
// intervals and the same bound on the spool, so that an embedding program
// is not the one whose disk a long outage of the store fills.
func TestLibraryDefaultsAreTheCommandLines(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	walDB(t, src)
	r, err := ferry.Replicate(context.Background(), src, []string{"file://" + filepath.Join(dir, "replica")}, ferry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := r.Options()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	want := ferry.Options{
		SpoolDir:         filepath.Join(dir, ".app.db-ferry"),
		SyncInterval:     config.DefaultSyncInterval,
		SnapshotInterval: config.DefaultSnapshotInterval,
		MaxSpoolBytes:    config.DefaultMaxSpoolBytes,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("zero Options run as %+v, want the command line's %+v", got, want)
	}

	set := ferry.Options{SpoolDir: filepath.Join(dir, "spool"), SyncInterval: time.Minute, SnapshotInterval: 2 * time.Hour, MaxSpoolBytes: 64 << 20}
	r, err = ferry.Replicate(context.Background(), src, []string{"file://" + filepath.Join(dir, "replica")}, set)
	if err != nil {
		t.Fatal(err)
	}
	got = r.Options()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, set) {
		t.Errorf("Options %+v run as %+v", set, got)
	}
}

// A negative option is a mistake, not a way to turn the bound off.
func TestLibraryRefusesNegativeOptions(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	walDB(t, src)
	for _, o := range []ferry.Options{{MaxSpoolBytes: -1}, {SyncInterval: -time.Second}, {SnapshotInterval: -time.Hour}} {
		r, err := ferry.Replicate(context.Background(), src, []string{"file://" + filepath.Join(dir, "replica")}, o)
		if err == nil {
			r.Close()
			t.Errorf("Replicate with %+v succeeded", o)
		}
	}
}

// A Replicate that fails leaves no spool directory it created beside the
// database, and never removes one that was there before it.
func TestLibraryFailedStartRemovesItsSpool(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app.db")
	if err := os.WriteFile(src, nil, 0o600); err != nil { // not in WAL mode
		t.Fatal(err)
	}
	url := "file://" + filepath.Join(dir, "replica")
	if _, err := ferry.Replicate(context.Background(), src, []string{url}, ferry.Options{}); err == nil {
		t.Fatal("replicating a database not in WAL mode succeeded")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".app.db-ferry") {
			t.Errorf("a failed Replicate left %s behind", e.Name())
		}
	}

	kept := filepath.Join(dir, "kept-spool")
	if err := os.Mkdir(kept, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := ferry.Replicate(context.Background(), src, []string{url}, ferry.Options{SpoolDir: kept}); err == nil {
		t.Fatal("replicating a database not in WAL mode succeeded")
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("a failed Replicate removed the spool directory it was given: %v", err)
	}
}
