package follow

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/testenv"
)

// follower makes a follower's database at the state of txid 1 of s, as a
// restore would, and opens it for applying.
func follower(t *testing.T, s *source) (*db, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "follower.db")
	if err := os.WriteFile(path, s.states[0], 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := openDB(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.close() })
	return d, path
}

// applyPending applies s's pending transactions to d, one each, and
// drops them.
func applyPending(t *testing.T, s *source, d *db) {
	t.Helper()
	for _, rec := range s.pending {
		if err := d.apply(context.Background(), rec.size, pagesOf(rec, rec.size)); err != nil {
			t.Fatalf("apply txid %d: %v", rec.txid, err)
		}
	}
	s.pending = nil
}

func openReader(t *testing.T, path string) *sql.DB {
	t.Helper()
	r, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	r.SetMaxOpenConns(1)
	t.Cleanup(func() { r.Close() })
	return r
}

func sum(t *testing.T, q interface {
	QueryRow(string, ...any) *sql.Row
}) (n, total int) {
	t.Helper()
	if err := q.QueryRow("SELECT count(*), coalesce(sum(balance), 0) FROM accounts").Scan(&n, &total); err != nil {
		t.Fatal(err)
	}
	return n, total
}

// A reader holding a read transaction keeps seeing the state it started
// with while a transaction is applied and committed: the pages go to the
// WAL, not over the database file under it. A reader that starts after
// the commit sees the new state whole.
func TestReaderKeepsItsSnapshot(t *testing.T) {
	s := newSource(t, 4096)
	d, path := follower(t, s)
	s.exec("INSERT INTO accounts (balance) SELECT 100 FROM generate_series(1, 50)")
	applyPending(t, s, d)

	held := openReader(t, path)
	tx, err := held.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if n, total := sum(t, tx); n != 50 || total != 5000 {
		t.Fatalf("before: %d accounts, sum %d", n, total)
	}
	// Each transfer keeps the sum; the insert of 50 more changes it, and
	// the blobs grow the database by many pages.
	s.exec(
		"UPDATE accounts SET balance = balance - 7 WHERE id = 3",
		"UPDATE accounts SET balance = balance + 7 WHERE id = 9",
		"INSERT INTO accounts (balance, note) SELECT 100, randomblob(3000) FROM generate_series(1, 50)",
	)
	applyPending(t, s, d)
	if n, total := sum(t, tx); n != 50 || total != 5000 {
		t.Fatalf("a reader in a read transaction saw %d accounts, sum %d, after the follower committed: want its snapshot (50, 5000)", n, total)
	}
	if n, total := sum(t, openReader(t, path)); n != 100 || total != 10000 {
		t.Fatalf("a new reader sees %d accounts, sum %d; want 100, 10000", n, total)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, total := sum(t, held); n != 100 || total != 10000 {
		t.Fatalf("the reader, once its transaction ended, sees %d, %d", n, total)
	}
	sameContent(t, s, path, s.txid)
}

// A schema change at the source reaches readers that cached the old
// schema: page 1 carries the schema cookie, and they reload on it.
func TestSchemaChangeReachesReaders(t *testing.T) {
	s := newSource(t, 4096)
	d, path := follower(t, s)
	r := openReader(t, path)
	sum(t, r) // caches the schema
	s.exec(
		"CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT)",
		"INSERT INTO audit (what) VALUES ('one'), ('two')",
		"CREATE INDEX accounts_balance ON accounts (balance)",
		"ALTER TABLE accounts ADD COLUMN owner TEXT",
	)
	applyPending(t, s, d)
	var n int
	if err := r.QueryRow("SELECT count(*) FROM audit").Scan(&n); err != nil || n != 2 {
		t.Fatalf("a reader with the old schema cached: %d rows of the new table, %v", n, err)
	}
	if err := r.QueryRow("SELECT count(owner) FROM accounts INDEXED BY accounts_balance WHERE balance > 0").Scan(&n); err != nil {
		t.Fatalf("a reader with the old schema cached cannot use the new column and index: %v", err)
	}
	sameContent(t, s, path, s.txid)
}

// The database grows and shrinks with the source, to the page, and every
// state in between is exact.
func TestDatabaseGrowsAndShrinks(t *testing.T) {
	for _, pageSize := range []int{512, 4096, 65536} {
		t.Run(fmt.Sprint(pageSize), func(t *testing.T) {
			s := newSource(t, pageSize)
			d, path := follower(t, s)
			steps := []string{
				"INSERT INTO accounts (balance, note) SELECT 1, randomblob(20000) FROM generate_series(1, 40)",
				"INSERT INTO accounts (balance, note) SELECT 2, randomblob(500) FROM generate_series(1, 200)",
				"DELETE FROM accounts WHERE balance = 1",
				"VACUUM",
				"INSERT INTO accounts (balance, note) SELECT 3, randomblob(9000) FROM generate_series(1, 5)",
				"DELETE FROM accounts",
				"VACUUM",
			}
			var sizes []int
			for _, q := range steps {
				s.exec(q)
				rec := s.pending[0]
				applyPending(t, s, d)
				sizes = append(sizes, int(rec.size))
				sameContent(t, s, path, s.txid)
			}
			if sizes[3] >= sizes[2] || sizes[6] >= sizes[5] || sizes[0] <= 2 {
				t.Fatalf("the database did not grow and shrink as the test needs: sizes %v", sizes)
			}
		})
	}
}

// A page of another size, or a size its pages do not reach, is refused
// before anything commits.
func TestShapeRefused(t *testing.T) {
	s := newSource(t, 4096)
	d, path := follower(t, s)
	s.exec("INSERT INTO accounts (balance, note) SELECT 5, randomblob(9000) FROM generate_series(1, 3)")
	rec := s.pending[0]
	small := txnRec{pages: map[uint32][]byte{}}
	for p, page := range rec.pages {
		small.pages[p] = page[:1024]
	}
	if err := d.apply(context.Background(), rec.size, pagesOf(small, rec.size)); !errors.Is(err, errShape) {
		t.Fatalf("pages of 1024 bytes into a 4096-byte database: %v", err)
	}
	if err := d.apply(context.Background(), rec.size+3, pagesOf(rec, rec.size)); !errors.Is(err, errShape) || !strings.Contains(err.Error(), "pages reach") {
		t.Fatalf("a size past the pages: %v", err)
	}
	sameContent(t, s, path, 1)
	applyPending(t, s, d)
	sameContent(t, s, path, 2)
}

// A source with auto_vacuum moves pages and shrinks at every commit that
// frees some; the follower's own commit must not vacuum on top of what it
// applies (its free-page count is the source's, zero once committed).
func TestAutoVacuumSource(t *testing.T) {
	for _, mode := range []string{"FULL", "INCREMENTAL"} {
		t.Run(mode, func(t *testing.T) {
			s := newSource(t, 1024, "PRAGMA auto_vacuum = "+mode)
			d, path := follower(t, s)
			for _, q := range []string{
				"INSERT INTO accounts (balance, note) SELECT 1, randomblob(3000) FROM generate_series(1, 60)",
				"CREATE TABLE extra (x BLOB)",
				"INSERT INTO extra SELECT randomblob(2000) FROM generate_series(1, 30)",
				"DELETE FROM accounts WHERE id % 2 = 0",
				"DROP TABLE extra",
				"PRAGMA incremental_vacuum",
				"UPDATE accounts SET note = randomblob(100)",
			} {
				s.exec(q)
				applyPending(t, s, d)
				sameContent(t, s, path, s.txid)
			}
		})
	}
}

// The same with the reader in another process, Debian's sqlite3, an
// SQLite nobody here built: it holds a read transaction open across a
// commit of the follower, and sees the old state until it ends it.
func TestReaderInAnotherProcessKeepsItsSnapshot(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		testenv.Missing(t, "the sqlite3 command (Debian package sqlite3)")
	}
	s := newSource(t, 4096)
	d, path := follower(t, s)
	s.exec("INSERT INTO accounts (balance) SELECT 100 FROM generate_series(1, 50)")
	applyPending(t, s, d)

	cmd := exec.Command("sqlite3", path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(outPipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// ask sends statements to sqlite3 and returns the line its query
	// prints: sqlite3 flushes its output after each statement.
	ask := func(stmts string) string {
		t.Helper()
		if _, err := io.WriteString(in, stmts+"\n"); err != nil {
			t.Fatal(err)
		}
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("sqlite3 exited")
			}
			return line
		case <-time.After(30 * time.Second):
			t.Fatalf("sqlite3 did not answer %q", stmts)
		}
		return ""
	}
	const q = "SELECT count(*), sum(balance) FROM accounts;"
	if got := ask("BEGIN; " + q); got != "50|5000" {
		t.Fatalf("before: %q", got)
	}
	s.exec("INSERT INTO accounts (balance, note) SELECT 100, randomblob(3000) FROM generate_series(1, 50)")
	applyPending(t, s, d)
	if got := ask(q); got != "50|5000" {
		t.Fatalf("sqlite3 in a read transaction saw %q after the follower committed; want its snapshot 50|5000", got)
	}
	if got := ask("COMMIT; " + q); got != "100|10000" {
		t.Fatalf("sqlite3 after its transaction ended: %q", got)
	}
}
