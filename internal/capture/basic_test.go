package capture

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

func testOptions(dir, db string, targets map[string]objstore.Store) Options {
	return Options{
		DBPath:           db,
		SpoolDir:         filepath.Join(dir, "spool"),
		Targets:          targets,
		SyncInterval:     50 * time.Millisecond,
		SnapshotInterval: time.Hour,
		PollInterval:     10 * time.Millisecond,
		Log:              testLog(),
	}
}

// testLog logs to stderr when FERRY_CAPTURE_TEST_LOG is set.
func testLog() *slog.Logger {
	if os.Getenv("FERRY_CAPTURE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestReplicateBasic follows a few commits to the latest state and to a
// txid in the middle.
func TestReplicateBasic(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE app_meta(k INTEGER)", "INSERT INTO app_meta VALUES(0)", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	store := memstore.New()
	r := startReplicator(t, testOptions(dir, db, map[string]objstore.Store{"mem://a": store}))
	base := r.sync(t)
	app := openApp(t, db)
	hashes := map[int]string{0: sha3(t, db)}
	for k := 1; k <= 30; k++ {
		tx, err := app.Begin()
		if err != nil {
			t.Fatal(err)
		}
		tx.Exec("INSERT INTO t(v) VALUES(?)", fmt.Sprint("row ", k))
		tx.Exec("UPDATE app_meta SET k=?", k)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		hashes[k] = sha3(t, db)
	}
	last := r.sync(t)
	if last != base+30 {
		t.Fatalf("30 commits after txid %d ended at txid %d", base, last)
	}
	for _, k := range []int{0, 1, 17, 30} {
		out, res := restoreAt(t, store, base+uint64(k), dir)
		if got := sha3(t, out); got != hashes[k] {
			t.Fatalf("txid %d (commit %d): hash %s, want %s", res.TXID, k, got, hashes[k])
		}
	}
	t.Logf("status: %+v", r.Status())
}
