package capture

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
)

// idleOptions are testOptions for a database that goes idle quickly.
func idleOptions(dir, db string, store objstore.Store) Options {
	o := testOptions(dir, db, map[string]objstore.Store{"mem://a": store})
	o.IdleAfter = 100 * time.Millisecond
	o.quietMargin = 50 * time.Millisecond
	return o
}

// runIdle runs a Replicator on o until it goes idle, after calling work
// with it running; it fails the test if Run returns anything but ErrIdle.
func runIdle(t *testing.T, o Options, work func(r *Replicator)) *Replicator {
	t.Helper()
	r, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if work != nil {
		work(r)
	}
	if err := <-done; !errors.Is(err, ErrIdle) {
		t.Fatalf("Run returned %v, want ErrIdle; status %+v", err, r.Status())
	}
	return r
}

func syncNow(t *testing.T, r *Replicator) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	txid, err := r.Sync(ctx)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return txid
}

func countKeys(t *testing.T, store objstore.Store, prefix string) int {
	t.Helper()
	n := 0
	for _, err := range store.List(context.Background(), prefix) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// walSeq reads the checkpoint sequence number in the log's header, which
// SQLite raises each time it starts the log again.
func walSeq(t *testing.T, db string) uint32 {
	t.Helper()
	b, err := os.ReadFile(db + "-wal")
	if err != nil || len(b) < 32 {
		t.Fatalf("read the log header: %v (%d bytes)", err, len(b))
	}
	return binary.BigEndian.Uint32(b[12:16])
}

// TestIdleCarriesOn lets a database go idle again and again, each time
// leaving its log in another state for the application to change (written
// on, started again, deleted and created anew), and checks that each wake
// carries the history on without a snapshot or a gap, and restores
// exactly.
func TestIdleCarriesOn(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE app_meta(k INTEGER)", "INSERT INTO app_meta VALUES(0)", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	store := memstore.New()
	o := idleOptions(dir, db, store)
	// ferry copies every frame into the database file as soon as it has
	// read it, so that the log is all checkpointed when it goes idle and
	// the application's next commit starts the log again.
	o.CheckpointPages, o.TruncatePages = 1, 1<<30
	k := 0
	commits := func(app *sql.DB, n int) {
		for range n {
			k++
			if _, err := app.Exec("INSERT INTO t(v) VALUES(?)", strings.Repeat(fmt.Sprint(k), 50)); err != nil {
				t.Fatal(err)
			}
			if _, err := app.Exec("UPDATE app_meta SET k=?", k); err != nil {
				t.Fatal(err)
			}
		}
	}
	app := openApp(t, db)
	runIdle(t, o, func(r *Replicator) {
		commits(app, 3)
		syncNow(t, r)
		// Until every frame is in the database file: ferry moves its read
		// mark to the end of the log at each step.
		for {
			var busy, log, done int
			if err := app.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &done); err != nil {
				t.Fatal(err)
			}
			if busy == 0 && log == done {
				break
			}
		}
	})
	snaps := countKeys(t, store, "snapshots/")
	check := func(name string) {
		t.Helper()
		want := sha3(t, db)
		r := runIdle(t, o, func(r *Replicator) { syncNow(t, r) })
		if st := r.Status(); len(st.Gaps) > 0 {
			t.Fatalf("%s: gaps %+v", name, st.Gaps)
		}
		if n := countKeys(t, store, "snapshots/"); n != snaps {
			t.Fatalf("%s: %d snapshots, want %d: the wake took a snapshot", name, n, snaps)
		}
		out, _ := restoreAt(t, store, 0, dir)
		if got := sha3(t, out); got != want {
			t.Fatalf("%s: restored %s, source %s", name, got, want)
		}
		if m := marker(t, out); m != k {
			t.Fatalf("%s: restored commit %d, want %d", name, m, k)
		}
	}

	// The log ferry left, all checkpointed, starts again at the first
	// commit: a new generation that ferry must take as the old one's
	// continuation.
	before := walSeq(t, db)
	commits(app, 5)
	if after := walSeq(t, db); after != before+1 {
		t.Fatalf("the log's checkpoint sequence went from %d to %d; the test wants one restart", before, after)
	}
	check("log started again")

	// The application's last connection closes: SQLite checkpoints and
	// deletes the log; the next connection's commits make a new one.
	app.Close()
	if _, err := os.Stat(db + "-wal"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the log is still there after the last connection closed: %v", err)
	}
	app = openApp(t, db)
	commits(app, 5)
	check("log deleted and made anew")

	// Commits on the same generation, woken while the application still
	// has the database open.
	o.CheckpointPages = 0
	o.IdleAfter = 2 * time.Second
	commits(app, 2)
	runIdle(t, o, func(r *Replicator) {
		syncNow(t, r)
		commits(app, 3)
		syncNow(t, r)
	})
	o.IdleAfter = 100 * time.Millisecond
	commits(app, 5)
	check("log written on")
}

// TestIdleBreak checkpoints away, while the database is idle, frames
// ferry never read: the wake must find out, answer with a snapshot, report
// the gap, and restore exactly.
func TestIdleBreak(t *testing.T) {
	needCLI(t)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE app_meta(k INTEGER)", "INSERT INTO app_meta VALUES(0)", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	store := memstore.New()
	o := idleOptions(dir, db, store)
	app := openApp(t, db)
	runIdle(t, o, func(r *Replicator) {
		app.Exec("INSERT INTO t(v) VALUES('before')")
		syncNow(t, r)
	})
	snaps := countKeys(t, store, "snapshots/")
	app.Exec("INSERT INTO t(v) VALUES('lost 1')")
	app.Exec("INSERT INTO t(v) VALUES('lost 2')")
	if _, err := app.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	app.Exec("INSERT INTO t(v) VALUES('after')")
	want := sha3(t, db)
	r := runIdle(t, o, func(r *Replicator) { syncNow(t, r) })
	st := r.Status()
	if len(st.Gaps) != 1 || !strings.Contains(st.Gaps[0].Reason, "log") {
		t.Fatalf("gaps %+v, want the one break", st.Gaps)
	}
	if n := countKeys(t, store, "snapshots/"); n != snaps+1 {
		t.Fatalf("%d snapshots, want %d: a break is answered with one", n, snaps+1)
	}
	out, _ := restoreAt(t, store, 0, dir)
	if got := sha3(t, out); got != want {
		t.Fatalf("restored %s, source %s", got, want)
	}
}
