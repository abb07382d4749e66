package capture

import (
	"context"
	"testing"
	"time"
)

// TestLockWritersAsksAgainAndAgain checks how ferry asks for SQLite's
// writer lock for a checkpoint under it. A writer at full speed holds the
// lock nearly all the time and lets it go for microseconds between
// commits; SQLite's own busy handler asks three times in 3 ms (at 0, 1
// and 3 ms) and lost against such a writer about half the time, which
// let the log run long. So ferry asks itself, again and again: while
// another connection holds the lock, lockWriters must ask several times,
// give up after about its wait, and hold nothing; once the lock is free,
// take it at once and keep the other connection's commits out until it
// lets go.
func TestLockWritersAsksAgainAndAgain(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	conns, err := openConns(ctx, db, 5*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	defer conns.close()
	// Long enough that a loaded machine (tests in parallel, the race
	// detector) leaves room for several tries.
	conns.lockWait = 30 * time.Millisecond
	app := openApp(t, db)
	reader := openApp(t, db, "PRAGMA query_only=1")
	rows := func() int {
		t.Helper()
		var n int
		if err := reader.QueryRow("SELECT count(*) FROM t").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	for range 3 {
		tx, err := app.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec("INSERT INTO t(v) VALUES('held')"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		locked, err := conns.lockWriters(ctx)
		took := time.Since(start)
		if err != nil || locked {
			t.Fatalf("lockWriters against a held lock: %v, %v", locked, err)
		}
		if conns.lockTries < 4 {
			t.Errorf("lockWriters asked %d times in %s; it must ask again and again", conns.lockTries, took)
		}
		if took < conns.lockWait || took > conns.lockWait+time.Second {
			t.Errorf("lockWriters gave up after %s; it waits about %s", took, conns.lockWait)
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("the application's commit after ferry gave up: %v", err)
		}
	}

	before := rows()
	locked, err := conns.lockWriters(ctx)
	if err != nil || !locked || conns.lockTries != 1 {
		t.Fatalf("lockWriters on a free lock: %v, %v after %d tries", locked, err, conns.lockTries)
	}
	committed := make(chan error, 1)
	go func() {
		_, err := app.Exec("INSERT INTO t(v) VALUES('after')")
		committed <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if n := rows(); n != before {
		t.Fatalf("%d commits landed while ferry held the writer lock", n-before)
	}
	if err := conns.unlockWriters(); err != nil {
		t.Fatal(err)
	}
	if err := <-committed; err != nil {
		t.Fatalf("the commit that waited for ferry's lock: %v", err)
	}
	if n := rows(); n != before+1 {
		t.Fatalf("%d rows after the waiting commit, want %d", n, before+1)
	}
}
