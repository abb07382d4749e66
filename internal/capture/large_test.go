package capture

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
	"github.com/ferrydb/ferry/internal/wal"
)

// The large tests write and restore databases of more than a gigabyte
// several times over: minutes of work and gigabytes of disk, too much for
// CI, so they run only when asked.
const largeEnv = "FERRY_LARGE_TESTS"

func needLarge(t *testing.T) {
	t.Helper()
	if os.Getenv(largeEnv) != "1" {
		t.Skipf("large-database test (over 1 GiB, minutes, several GiB of disk under %s); run with: %s=1 go test -run TestLarge -v -timeout 60m ./internal/capture/",
			os.TempDir(), largeEnv)
	}
	needCLI(t)
}

// TestLargeLockPage replicates a database of more than 1 GiB with 4 KiB
// pages, so that it holds SQLite's lock page, which SQLite never writes
// and which starts a chunk. Commits touch the pages either side of it,
// shrink the database below it (incremental auto-vacuum, which moves
// pages and truncates) and grow it past it again; the restores of every
// one of those states must be exact.
func TestLargeLockPage(t *testing.T) {
	needLarge(t)
	runLarge(t, 4096, 1088<<20, false)
}

// TestLargePages64K does the same with 64 KiB pages, where one page is
// one chunk and the lock page a whole chunk of zeros, in a database
// without auto-vacuum, the default: the shrink is a VACUUM, one
// transaction that rewrites the whole gigabyte.
func TestLargePages64K(t *testing.T) {
	needLarge(t)
	runLarge(t, 65536, 1088<<20, true)
}

// largeRow is the size of a row of the test table: half random, so that
// no two chunks are alike (content addressing would otherwise store the
// database as a handful of chunks), half zeros, so that compression still
// has work to do.
const largeRow = 1000

// largeState is a state of the database the test recorded, to compare a
// restore with.
type largeState struct {
	name  string
	txid  uint64
	hash  string
	pages uint32
}

func runLarge(t *testing.T, pageSize int, size int64, vacuum bool) {
	dir := t.TempDir()
	lock := wal.LockPage(pageSize)
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	rate := func(b int64, d time.Duration) string {
		return fmt.Sprintf("%.0f MiB/s", float64(b)/(1<<20)/d.Seconds())
	}

	// The shell fills the database without a journal: no log to fold in
	// afterwards, and the fastest SQLite there is.
	db := filepath.Join(dir, "app.db")
	rowsPerPage := int64((pageSize - 8) / (largeRow + 12))
	rows := size / int64(pageSize) * rowsPerPage
	autoVacuum := "INCREMENTAL"
	if vacuum {
		autoVacuum = "NONE"
	}
	start := time.Now()
	fill := fmt.Sprintf(`PRAGMA page_size=%d; PRAGMA auto_vacuum=%s; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
CREATE TABLE app_meta(k INTEGER); INSERT INTO app_meta VALUES(0);
CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
BEGIN; INSERT INTO t(v) SELECT randomblob(%d) || zeroblob(%d) FROM generate_series(1, %d); COMMIT;
PRAGMA journal_mode=WAL;`, pageSize, autoVacuum, largeRow/2, largeRow/2, rows)
	if out, err := exec.Command("sqlite3", db, fill).CombinedOutput(); err != nil {
		t.Fatalf("fill %s: %v: %s", db, err, out)
	}
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("created %s with %d-byte pages (%d rows) in %v, %s", mib(fi.Size()), pageSize, rows, time.Since(start).Round(time.Millisecond), rate(fi.Size(), time.Since(start)))
	if pages := pageCount(t, db); pages <= lock {
		t.Fatalf("the database has %d pages, not past the lock page %d", pages, lock)
	}

	fs, err := filestore.New(filepath.Join(dir, "replica"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	logs := &snapshotLog{}
	o := testOptions(dir, db, map[string]objstore.Store{"file://large": fs})
	o.Log = slog.New(logs)
	start = time.Now()
	r := startReplicator(t, o)
	app := openApp(t, db)
	var states []largeState
	record := func(name string, txid uint64) {
		s := largeState{name: name, txid: txid, hash: sha3(t, db), pages: pageCount(t, db)}
		states = append(states, s)
		t.Logf("%s: txid %d, %d pages (%s)", name, txid, s.pages, mib(int64(s.pages)*int64(pageSize)))
	}
	base := syncWithin(t, r, 30*time.Minute)
	took := time.Since(start)
	t.Logf("first snapshot in %v, %s; %v", took.Round(time.Millisecond), rate(fi.Size(), took), logs.last())
	record("initial", base)

	exec1 := func(qs ...string) {
		t.Helper()
		tx, err := app.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		for _, q := range qs {
			if _, err := tx.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	// touch rewrites a row on the table's last leaf before the lock page,
	// one on its first leaf after it, and the first row.
	touch := func(k int) {
		t.Helper()
		below, bp := leafRow(t, app, lock, -1)
		above, ap := leafRow(t, app, lock, +1)
		exec1(fmt.Sprintf("UPDATE t SET v=randomblob(%d) WHERE id IN (1, %d, %d)", largeRow, below, above),
			fmt.Sprintf("UPDATE app_meta SET k=%d", k))
		t.Logf("updated rows 1, %d (page %d) and %d (page %d) around lock page %d", below, bp, above, ap, lock)
	}

	start = time.Now()
	touch(1)
	record("both sides of the lock page", syncWithin(t, r, 5*time.Minute))
	t.Logf("update and sync in %v", time.Since(start).Round(time.Millisecond))

	// Shrink: drop the rows from 32 MiB below the lock page on, and give
	// the pages back, so that the file ends before the lock page.
	start = time.Now()
	from, _ := leafRow(t, app, lock-uint32(32<<20/pageSize), -1)
	exec1(fmt.Sprintf("DELETE FROM t WHERE id >= %d", from), "UPDATE app_meta SET k=2")
	if vacuum {
		if _, err := app.Exec("VACUUM"); err != nil {
			t.Fatalf("VACUUM: %v", err)
		}
	} else {
		incrementalVacuum(t, app)
	}
	shrunk := syncWithin(t, r, 5*time.Minute)
	record("shrunk below the lock page", shrunk)
	if s := states[len(states)-1]; s.pages >= lock {
		t.Fatalf("after the shrink the database has %d pages, not fewer than the lock page %d", s.pages, lock)
	}
	t.Logf("shrink and sync in %v", time.Since(start).Round(time.Millisecond))

	// Grow past the lock page again, by 64 MiB, and touch both sides.
	start = time.Now()
	grow := int64(64<<20) / int64(pageSize) * rowsPerPage
	exec1(fmt.Sprintf("INSERT INTO t(v) SELECT randomblob(%d) || zeroblob(%d) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<%d) SELECT x FROM c)",
		largeRow/2, largeRow/2, grow), "UPDATE app_meta SET k=3")
	if p := pageCount(t, db); p <= lock {
		t.Fatalf("after the growth the database has %d pages, not past the lock page %d", p, lock)
	}
	touch(4)
	last := syncWithin(t, r, 10*time.Minute)
	record("grown past the lock page", last)
	t.Logf("grow by %s and sync in %v", mib(64<<20), time.Since(start).Round(time.Millisecond))
	r.stop()

	// A replicator that snapshots every change takes a snapshot of the
	// last state, rereading only the chunks the log says changed: among
	// them the one that holds the lock page.
	o.SnapshotInterval = time.Millisecond
	start = time.Now()
	r = startReplicator(t, o)
	deadline := time.Now().Add(10 * time.Minute)
	for logs.last()["txid"] != int64(last) {
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot at txid %d: %v", last, logs.last())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("incremental snapshot in %v: %v", time.Since(start).Round(time.Millisecond), logs.last())
	r.stop()

	// The latest comes from the last snapshot alone; the earlier states
	// from the first snapshot and the change sets after it.
	for i := len(states) - 1; i >= 0; i-- {
		s := states[i]
		txid := s.txid
		if i == len(states)-1 {
			txid = 0
		}
		start = time.Now()
		out, res := restoreAt(t, fs, txid, dir)
		restored := time.Since(start)
		start = time.Now()
		checkLarge(t, out, s, res.TXID, pageSize)
		t.Logf("restored %s (txid %d, %s) in %v, %s; shell's hash and integrity_check %v",
			s.name, res.TXID, mib(int64(res.Pages)*int64(res.PageSize)), restored.Round(time.Millisecond),
			rate(int64(res.Pages)*int64(res.PageSize), restored), time.Since(start).Round(time.Millisecond))
		if err := os.Remove(out); err != nil {
			t.Fatal(err)
		}
	}
}

// checkLarge compares a restored database with the state it should hold.
func checkLarge(t *testing.T, out string, want largeState, txid uint64, pageSize int) {
	t.Helper()
	if txid != want.txid {
		t.Errorf("restore of %s ended at txid %d, want %d", want.name, txid, want.txid)
	}
	if got := sha3(t, out); got != want.hash {
		t.Errorf("restore of %s (txid %d): the shell's hash is %s, the live database's was %s", want.name, txid, got, want.hash)
	}
	pages := pageCount(t, out)
	if pages != want.pages {
		t.Errorf("restore of %s (txid %d) has %d pages, the live database had %d", want.name, txid, pages, want.pages)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := int64(pageSize) * int64(pages); fi.Size() != n {
		t.Errorf("restore of %s (txid %d) is %d bytes, want %d pages of %d bytes, %d", want.name, txid, fi.Size(), pages, pageSize, n)
	}
	ok, err := cli(out, "PRAGMA integrity_check")
	if err != nil {
		t.Fatal(err)
	}
	if ok != "ok" {
		t.Errorf("restore of %s (txid %d) fails integrity_check: %.2000s", want.name, txid, ok)
	}
}

// syncWithin is replicator.sync with a deadline that fits a gigabyte.
func syncWithin(t *testing.T, r *replicator, d time.Duration) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	txid, err := r.Sync(ctx)
	if err != nil {
		t.Fatalf("sync: %v; status %+v", err, r.Status())
	}
	return txid
}

func pageCount(t *testing.T, path string) uint32 {
	t.Helper()
	out, err := cli(path, "PRAGMA page_count")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(out, 10, 32)
	if err != nil {
		t.Fatalf("page count of %s: %q", path, out)
	}
	return uint32(n)
}

// incrementalVacuum gives every free page back to the file system. Each
// step of the pragma frees one page, so its rows are drained rather than
// left to a driver that might step it once.
func incrementalVacuum(t *testing.T, app *sql.DB) {
	t.Helper()
	rows, err := app.Query("PRAGMA incremental_vacuum")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("incremental_vacuum: %v", err)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
}

// leafRow returns a rowid stored on the leaf of table t nearest to page
// pgno, the last leaf before it (dir -1) or the first after it (dir +1),
// and that leaf's page.
// dbstat walks the table's tree, so the page is a live leaf of t rather
// than a free page that only looks like one; the rowid is then read from
// the page itself. Both go through the application's connection, which
// sees the pages still in the log, and whose SQLite has sqlite_dbpage.
func leafRow(t *testing.T, app *sql.DB, pgno uint32, dir int) (rowid int64, leafPage int64) {
	t.Helper()
	q := "SELECT max(pageno) FROM dbstat WHERE name='t' AND pagetype='leaf' AND pageno < ?"
	if dir > 0 {
		q = "SELECT min(pageno) FROM dbstat WHERE name='t' AND pagetype='leaf' AND pageno > ?"
	}
	var leaf sql.NullInt64
	if err := app.QueryRow(q, pgno).Scan(&leaf); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if !leaf.Valid {
		t.Fatalf("no leaf of t %s page %d", map[int]string{-1: "before", 1: "after"}[dir], pgno)
	}
	var page []byte
	if err := app.QueryRow("SELECT data FROM sqlite_dbpage WHERE pgno=?", leaf.Int64).Scan(&page); err != nil {
		t.Fatalf("read page %d: %v", leaf.Int64, err)
	}
	if len(page) < 16 || page[0] != 0x0d {
		t.Fatalf("page %d is not a table leaf: % x", leaf.Int64, page[:min(len(page), 16)])
	}
	// A table leaf cell is the payload's length, then the rowid.
	cell := int(binary.BigEndian.Uint16(page[8:]))
	if cell >= len(page) {
		t.Fatalf("page %d: cell at %d", leaf.Int64, cell)
	}
	_, n := sqliteVarint(page[cell:])
	id, m := sqliteVarint(page[cell+n:])
	if n == 0 || m == 0 {
		t.Fatalf("page %d: bad cell at %d", leaf.Int64, cell)
	}
	return int64(id), leaf.Int64
}

// sqliteVarint decodes SQLite's big-endian varint, whose ninth byte
// carries eight bits, and returns it and its length (0 if b is short).
func sqliteVarint(b []byte) (uint64, int) {
	var v uint64
	for i := range min(len(b), 9) {
		if i == 8 {
			return v<<8 | uint64(b[i]), 9
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}
