package wal

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
)

// With psow=0 and synchronous=FULL, SQLite pads the log to a sector boundary
// after each commit by writing the commit frame again. Each copy is a valid
// commit of its own: the reader yields it as a transaction that repeats the
// last page and changes nothing.
func TestSectorPaddingSQLite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	db, err := sql.Open("sqlite", "file:"+path+"?psow=0")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	l := &liveDB{dir: dir, path: path, pageSize: 1024, db: db, conn: conn}
	l.exec(t, "PRAGMA page_size=1024", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA wal_autocheckpoint=0")
	if l.base, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	l.exec(t, "CREATE TABLE t(a)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)")

	_, r := l.openWAL(t)
	txns := readAll(t, r)
	if len(txns) <= 3 {
		t.Fatalf("%d transactions for 3 commits: no padding seen", len(txns))
	}
	t.Logf("3 commits read as %d transactions", len(txns))
	a, b := make([]byte, 1024), make([]byte, 1024)
	repeats := 0
	for i := 1; i < len(txns); i++ {
		prev, txn := txns[i-1], txns[i]
		last := prev.Pages[len(prev.Pages)-1]
		if txn.Frames != 1 || txn.Commit != prev.Commit || txn.Pages[0].Pgno != last.Pgno {
			continue
		}
		if err := r.ReadPage(last, a); err != nil {
			t.Fatal(err)
		}
		if err := r.ReadPage(txn.Pages[0], b); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a, b) {
			repeats++
		}
	}
	if repeats != len(txns)-3 {
		t.Fatalf("%d of %d transactions repeat the commit before them, want %d", repeats, len(txns), len(txns)-3)
	}
	rebuilt := rebuild(t, dir, l.base, r, 1024, txns)
	if got, want := contentHash(t, rebuilt), contentHash(t, path); got != want {
		t.Fatalf("rebuilt %s, live %s", got, want)
	}
}
