package wal

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// liveDB is a database in WAL mode, written through one connection that
// never checkpoints, so its log keeps every transaction.
type liveDB struct {
	dir, path string
	pageSize  int
	db        *sql.DB
	conn      *sql.Conn
	// base is the database file as it was right after the switch to WAL
	// mode, before any transaction: the starting point of a rebuild.
	base []byte
}

func openLive(t testing.TB, pageSize int, pragmas ...string) *liveDB {
	t.Helper()
	dir := t.TempDir()
	l := &liveDB{dir: dir, path: filepath.Join(dir, "db"), pageSize: pageSize}
	db, err := sql.Open("sqlite", l.path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.db, l.conn = db, conn
	t.Cleanup(func() {
		conn.Close()
		db.Close()
	})
	// page_size and auto_vacuum only take effect before the first table.
	l.exec(t, "PRAGMA page_size="+strconv.Itoa(pageSize))
	l.exec(t, pragmas...)
	var mode string
	if err := conn.QueryRowContext(context.Background(), "PRAGMA journal_mode=WAL").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode=WAL: %q %v", mode, err)
	}
	l.exec(t, "PRAGMA wal_autocheckpoint=0")
	if l.base, err = os.ReadFile(l.path); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *liveDB) walPath() string { return l.path + "-wal" }

func (l *liveDB) exec(t testing.TB, qs ...string) {
	t.Helper()
	for _, q := range qs {
		if _, err := l.conn.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func (l *liveDB) execArgs(t testing.TB, q string, args ...any) {
	t.Helper()
	if _, err := l.conn.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// openWAL opens the live log for reading and returns a Reader at its
// first frame.
func (l *liveDB) openWAL(t testing.TB) (*os.File, *Reader) {
	t.Helper()
	f, err := os.Open(l.walPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	hdr, err := ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	if hdr.PageSize != l.pageSize {
		t.Fatalf("header page size %d, want %d", hdr.PageSize, l.pageSize)
	}
	return f, NewReader(f, hdr)
}

// sqlite3 runs Debian's sqlite3 shell, the oracle none of this code wrote.
func sqlite3(t testing.TB, db string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Fatalf("these tests need the sqlite3 shell as an oracle (Debian package sqlite3): %v", err)
	}
	out, err := exec.Command(bin, append([]string{"-bail", db}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s %q: %v\n%s", db, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// contentHash checks the database at path with PRAGMA integrity_check and
// returns sqlite3's .sha3sum of its content.
func contentHash(t testing.TB, path string) string {
	t.Helper()
	out := sqlite3(t, path, "PRAGMA integrity_check;", ".sha3sum")
	ok, sum, _ := strings.Cut(out, "\n")
	if ok != "ok" {
		t.Fatalf("integrity_check of %s: %s", path, out)
	}
	return sum
}

// rebuild writes base to a new file in dir and applies txns, read through
// r, to it: the database as of the last of them.
func rebuild(t testing.TB, dir string, base []byte, r *Reader, pageSize int, txns []Txn) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "rebuilt-*.db")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(base); err != nil {
		t.Fatal(err)
	}
	for _, txn := range txns {
		if err := apply(f, r, pageSize, txn); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// copyFile copies src to dst, creating dst.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readAll collects every committed transaction r yields until io.EOF.
func readAll(t testing.TB, r *Reader) []Txn {
	t.Helper()
	var txns []Txn
	for {
		txn, err := r.Next()
		if errors.Is(err, io.EOF) {
			return txns
		}
		if err != nil {
			t.Fatal(err)
		}
		txns = append(txns, txn)
	}
}

// sameTxns fails unless a and b are the same transactions, page numbers and
// page bytes included, read through ra and rb.
func sameTxns(t testing.TB, ra *Reader, a []Txn, rb *Reader, b []Txn) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d transactions, want %d", len(b), len(a))
	}
	pa, pb := make([]byte, ra.pageSize), make([]byte, rb.pageSize)
	for i := range a {
		ta, tb := a[i], b[i]
		if ta.Commit != tb.Commit || ta.Frames != tb.Frames || len(ta.Pages) != len(tb.Pages) ||
			ta.Start.Offset != tb.Start.Offset || ta.End.Offset != tb.End.Offset {
			t.Fatalf("txn %d: got %+v, want %+v", i, summary(tb), summary(ta))
		}
		for j := range ta.Pages {
			if ta.Pages[j].Pgno != tb.Pages[j].Pgno {
				t.Fatalf("txn %d page %d: pgno %d, want %d", i, j, tb.Pages[j].Pgno, ta.Pages[j].Pgno)
			}
			if err := ra.ReadPage(ta.Pages[j], pa); err != nil {
				t.Fatal(err)
			}
			if err := rb.ReadPage(tb.Pages[j], pb); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pa, pb) {
				t.Fatalf("txn %d page %d differs", i, ta.Pages[j].Pgno)
			}
		}
	}
}

type txnSummary struct {
	Start, End    int64
	Commit        uint32
	Frames, Pages int
}

func summary(txn Txn) txnSummary {
	return txnSummary{txn.Start.Offset, txn.End.Offset, txn.Commit, txn.Frames, len(txn.Pages)}
}
