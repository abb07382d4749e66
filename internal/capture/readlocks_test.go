package capture

import (
	"context"
	"database/sql"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCheckpointsKeepTheReadLocks runs ferry's own checkpoint steps (a
// PASSIVE checkpoint, taking and releasing the writer lock) while its read
// transaction protects the log, then has another process try a RESTART
// checkpoint, which must find the log held. Anything in them that closed a
// descriptor of the -shm file (or the database file) would silently drop
// every POSIX lock the process holds on it, ferry's read marks included,
// and the RESTART would then go through and recycle frames ferry had not
// read.
func TestCheckpointsKeepTheReadLocks(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE t(v TEXT)")
	app := openApp(t, db)
	for i := range 20 {
		if _, err := app.Exec("INSERT INTO t VALUES(?)", strings.Repeat("x", 100+i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	c, err := openConns(ctx, db, 30*time.Millisecond, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if err := c.handover(ctx, func(*sql.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// A frame past the read mark, which a RESTART would have to recycle.
	if _, err := app.Exec("INSERT INTO t VALUES('after')"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.checkpoint(ctx, "PASSIVE"); err != nil {
			t.Fatal(err)
		}
		if locked, err := c.lockWriters(ctx); err != nil || !locked {
			t.Fatalf("lockWriters: %v, %v", locked, err)
		}
		if err := c.unlockWriters(); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("sqlite3", db, "PRAGMA wal_checkpoint(RESTART)").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v: %s", err, out)
	}
	if !strings.HasPrefix(string(out), "1|") {
		t.Fatalf("another process restarted the log under ferry's read transaction (wal_checkpoint said %q): ferry's locks were lost", strings.TrimSpace(string(out)))
	}
}
