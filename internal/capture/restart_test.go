package capture

import (
	"context"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/memstore"
	"github.com/ferrydb/ferry/internal/wal"
)

// TestRestartCheckpointKeepsTheLogShort has another process commit as
// fast as it can while every BEGIN IMMEDIATE of ferry's loses the writer
// lock, as most do against such a writer: the log must still restart,
// through ferry's RESTART checkpoints and the reader handed over while
// they wait, and every commit must still get a txid of its own and
// restore exactly. Without them the log grows by 100-200 MiB a second
// here.
func TestRestartCheckpointKeepsTheLogShort(t *testing.T) {
	needCLI(t)
	beginImmediateLoses.Store(true)
	defer beginImmediateLoses.Store(false)
	dir := t.TempDir()
	db := newDB(t, dir, 4096, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	store := memstore.New()
	o := testOptions(dir, db, map[string]objstore.Store{"mem://restart": store})
	o.CheckpointPages, o.TruncatePages = 200, 400 // RESTART from 2,400 frames, 9.4 MiB
	o.PollInterval, o.SyncInterval = 50*time.Millisecond, time.Second
	r := startReplicator(t, o)
	base := r.sync(t)

	stop := make(chan struct{})
	var largest int64
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if fi, err := os.Stat(db + "-wal"); err == nil {
				largest = max(largest, fi.Size())
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	stopSampling := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopSampling()
	n := runInserter(t, db, "4s")
	stopSampling()
	const limit = 64 << 20
	t.Logf("%d commits in 4 s; the log grew to %.1f MiB at most (limit %.0f MiB)", n, float64(largest)/(1<<20), float64(limit)/(1<<20))
	if largest > limit {
		t.Fatalf("with BEGIN IMMEDIATE always losing, the log grew to %d bytes, more than %d", largest, limit)
	}
	checkEveryCommit(t, r, store, dir, db, base, n)
}

// TestImageAcrossALogRestart reads a snapshot's image while the log
// restarts under it. A checkpoint that copies the whole log leaves
// ferry's next read transaction on SQLite's slot 0, from which the
// application's next commit restarts the log and overwrites its first
// frames: the image must then read the pages whose frames it overwrote
// as the read transaction shows them, from the database file, and come
// out as the database was before that commit.
func TestImageAcrossALogRestart(t *testing.T) {
	needCLI(t)
	ctx := context.Background()
	dir := t.TempDir()
	const ps = 4096
	db := newDB(t, dir, ps, "CREATE TABLE a(v BLOB)", "CREATE TABLE b(v BLOB)")
	app := openApp(t, db)
	app.SetMaxOpenConns(1)
	run := func(q string) {
		t.Helper()
		if _, err := app.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	// Table a's page goes into the first frames of the log and no later
	// ones: the frames the restart overwrites.
	run("PRAGMA wal_checkpoint(TRUNCATE)")
	run("INSERT INTO a VALUES(randomblob(1000))")
	for range 20 {
		run("INSERT INTO b VALUES(randomblob(1000))")
	}
	c, err := openConns(ctx, db, 30*time.Millisecond, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	// Every frame into the database file, then a read transaction begun
	// with nothing left to copy: SQLite puts it on slot 0.
	if res, err := c.checkpoint(ctx, "PASSIVE"); err != nil || !res.complete() {
		t.Fatalf("checkpoint: %+v, %v", res, err)
	}
	if err := c.handover(ctx, func(*sql.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	rd, overlay := scanLog(t, db)
	before := logHeader(t, db)
	want := sha3(t, db)
	info, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	var pages uint32
	if err := c.tx().QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	im, err := newImage(ctx, db, info, c.tx(), rd, overlay, ps, pages)
	if err != nil {
		t.Fatal(err)
	}
	defer im.close()

	run("INSERT INTO b VALUES(randomblob(1000))")
	if now := logHeader(t, db); now.Salt1 == before.Salt1 {
		t.Fatalf("the application's commit did not restart the log: header %+v", now)
	}
	got := make([]byte, im.size())
	if _, err := im.ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatalf("read the image across the restart: %v", err)
	}
	if im.fromFileAfterRestart.Load() == 0 {
		t.Fatal("no page of the image was found overwritten: the test missed the restart")
	}
	out := filepath.Join(dir, "image.db")
	if err := os.WriteFile(out, got, 0o644); err != nil {
		t.Fatal(err)
	}
	if h := sha3(t, out); h != want {
		t.Fatalf("the image read across the restart has hash %s, the database before the commit %s", h, want)
	}
}

// logHeader reads the header of the log of the database at path. The log
// carries no locks: opening and closing it drops none.
func logHeader(t *testing.T, path string) wal.Header {
	t.Helper()
	f, err := os.Open(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := wal.ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
