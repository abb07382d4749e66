package capture

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/ferrydb/ferry/internal/wal"
)

// TestImageReadsFileAndDBPageAlike reads one image both ways, from the
// database file and through sqlite_dbpage, while the log holds frames for
// some of its pages (newer than the file's) and a writer keeps committing,
// and checks that they read the same bytes at every offset and length a
// caller may ask, page-aligned or not.
func TestImageReadsFileAndDBPageAlike(t *testing.T) {
	if !fileReadable() {
		t.Fatal("this test process's SQLite does not take OFD locks: TestMain turns them on, so the file path would go untested")
	}
	ctx := context.Background()
	const pageSize = 1024
	path := newDB(t, t.TempDir(), pageSize,
		"CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)",
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 400) INSERT INTO t SELECT i, randomblob(300) FROM n",
		"PRAGMA wal_checkpoint(TRUNCATE)")
	app := openApp(t, path, "PRAGMA wal_autocheckpoint=0")
	// Frames for a scattered tenth of the pages, left in the log.
	if _, err := app.Exec("UPDATE t SET v = randomblob(300) WHERE k % 10 = 3"); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Exec("INSERT INTO t SELECT k + 1000, randomblob(900) FROM t WHERE k <= 20"); err != nil {
		t.Fatal(err)
	}

	reader := openApp(t, path)
	tx, err := reader.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var pages uint32
	if err := tx.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}

	log, overlay := scanLog(t, path)
	if len(overlay) == 0 || len(overlay) >= int(pages) {
		t.Fatalf("%d of %d pages in the log: the test needs some, not all", len(overlay), pages)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := newImage(ctx, path, info, tx, log, overlay, pageSize, pages)
	if err != nil {
		t.Fatal(err)
	}
	defer fromFile.close()
	if fromFile.file == nil {
		t.Fatal("the image does not read the database file")
	}
	other, err := os.Stat(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	fromSQLite, err := newImage(ctx, path, other, tx, log, overlay, pageSize, pages)
	if err != nil {
		t.Fatal(err)
	}
	defer fromSQLite.close()
	if fromSQLite.file != nil {
		t.Fatal("the image reads a file that is not the transaction's database")
	}

	compare := func(when string) {
		t.Helper()
		size := fromFile.size()
		for _, r := range []struct{ off, n int64 }{
			{0, size}, {0, pageSize}, {pageSize - 7, 3 * pageSize}, {5*pageSize + 100, 17}, {size - 10, 10}, {size - pageSize/2, pageSize},
		} {
			a, b := make([]byte, r.n), make([]byte, r.n)
			na, errA := fromFile.ReadAt(a, r.off)
			nb, errB := fromSQLite.ReadAt(b, r.off)
			if na != nb || (errA == nil) != (errB == nil) || !bytes.Equal(a[:na], b[:nb]) {
				t.Fatalf("%s, at %d, %d bytes: the file gives %d bytes (%v), sqlite_dbpage %d (%v), equal %v",
					when, r.off, r.n, na, errA, nb, errB, bytes.Equal(a[:na], b[:nb]))
			}
		}
	}
	compare("with the log's frames newer than the file")

	// The writer goes on, and a checkpoint copies into the file what the
	// reader's mark allows, which is the overlay's frames: the images
	// must not change.
	if _, err := app.Exec("UPDATE t SET v = randomblob(300)"); err != nil {
		t.Fatal(err)
	}
	var busy, logged, done int
	if err := app.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logged, &done); err != nil {
		t.Fatal(err)
	}
	if done == 0 || done == logged {
		t.Fatalf("the checkpoint copied %d of %d frames: the test needs it held back by the reader, after copying some", done, logged)
	}

	compare("after a checkpoint and later commits")
}

// scanLog reads the committed transactions of the log of the database at
// path and returns the reader, to read their frames with, and the latest
// frame of each page they wrote.
func scanLog(t *testing.T, path string) (*wal.Reader, map[uint32]wal.PageRef) {
	t.Helper()
	f, err := os.Open(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	hdr, err := wal.ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	rd := wal.NewReader(f, hdr)
	overlay := map[uint32]wal.PageRef{}
	for {
		txn, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return rd, overlay
		}
		if err != nil {
			t.Fatalf("scan the log: %v", err)
		}
		for _, ref := range txn.Pages {
			overlay[ref.Pgno] = ref
		}
	}
}
