package capture

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestLockWritersWinsAgainstABusyWriter asks for SQLite's writer lock, as
// a checkpoint under it does, while another connection holds it most of
// the time: 2 ms of every 2.2, as a writer at full speed does between its
// commits. SQLite's own busy handler tries at 0, 1 and 3 ms, and each try
// finds the lock free about one time in eleven; asking again every
// lockRetryPause finds one of the gaps within lockWait. Both are tried in
// turns, so that a busy machine slows both alike. A lock won must keep
// the writer's commits out until it is let go.
func TestLockWritersWinsAgainstABusyWriter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	conns, err := openConns(ctx, db, 5*time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	defer conns.close()
	app := openApp(t, db, "PRAGMA synchronous=OFF")
	reader := openApp(t, db, "PRAGMA query_only=1")

	spin := func(d time.Duration) {
		for start := time.Now(); time.Since(start) < d; {
			runtime.Gosched()
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			tx, err := app.BeginTx(ctx, nil)
			if err == nil {
				_, err = tx.Exec("INSERT INTO t(v) VALUES('x')")
			}
			if err != nil {
				t.Error(err)
				return
			}
			spin(2 * time.Millisecond)
			if err := tx.Commit(); err != nil {
				t.Error(err)
				return
			}
			spin(200 * time.Microsecond)
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()
	lastRow := func() int64 {
		t.Helper()
		var id int64
		if err := reader.QueryRow("SELECT coalesce(max(id), 0) FROM t").Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	for lastRow() < 5 {
		time.Sleep(time.Millisecond)
	}

	// SQLite's own way, for comparison in the same run: the same request
	// through its busy handler, for as long.
	busyHandler := openApp(t, db, fmt.Sprintf("PRAGMA busy_timeout=%d", lockWait.Milliseconds()))
	const tries = 60
	won, wonBySQLite := 0, 0
	for range tries {
		locked, err := conns.lockWriters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if locked {
			won++
			before := lastRow()
			time.Sleep(3 * time.Millisecond)
			after := lastRow()
			if err := conns.unlockWriters(); err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Fatalf("%d commits landed while ferry held the writer lock", after-before)
			}
		}
		time.Sleep(5 * time.Millisecond)
		if _, err := busyHandler.ExecContext(ctx, "BEGIN IMMEDIATE"); err == nil {
			wonBySQLite++
			if _, err := busyHandler.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
		} else if !isBusy(err) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("won the writer lock %d times of %d; through SQLite's busy handler, %d", won, tries, wonBySQLite)
	if won < tries/3 || 2*won < 3*wonBySQLite {
		t.Fatalf("won the writer lock %d times of %d, SQLite's busy handler %d: a checkpoint under it would often be skipped", won, tries, wonBySQLite)
	}
}
