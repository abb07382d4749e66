package follow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	_ "modernc.org/sqlite" // the SQLite that writes the follower's database
)

// db is the follower's database, opened through SQLite in WAL mode on a
// single connection: every write goes through SQLite's pager and into the
// WAL, so other connections keep reading the snapshot they started with
// until the follower commits.
type db struct {
	path     string
	sql      *sql.DB
	conn     *sql.Conn
	pageSize int
}

// errShape is a transaction or a database that cannot be applied over the
// follower's database as it is: pages of another size, a size its pages do
// not reach. Only a restore anew gets past it.
var errShape = errors.New("cannot be applied over the follower's database")

// openDB opens the database at path for following. synchronous=FULL makes
// each COMMIT fsync the WAL before it returns, so that the txid recorded
// after it (mark.go) never runs ahead of what a power loss leaves behind.
func openDB(ctx context.Context, path string) (*db, error) {
	s, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.SetMaxOpenConns(1)
	conn, err := s.Conn(ctx)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d := &db{path: path, sql: s, conn: conn}
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		d.close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if mode != "wal" {
		// Without WAL, a write would lock readers out, and a rollback
		// journal would let them see nothing at all while it is applied.
		d.close()
		return nil, fmt.Errorf("open %s: journal mode is %s, not wal", path, mode)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&d.pageSize); err != nil {
		d.close()
		return nil, fmt.Errorf("open %s: page size: %w", path, err)
	}
	return d, nil
}

func (d *db) close() error {
	d.conn.Close()
	return d.sql.Close()
}

// checkpoint copies the whole log into the database file and empties it,
// waiting for readers that hold older snapshots for as long as the busy
// timeout allows, and trying again until ctx ends.
func (d *db) checkpoint(ctx context.Context) error {
	for {
		var busy, logged, done int
		err := d.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logged, &done)
		if err == nil && busy == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("checkpoint %s: %w", d.path, ctx.Err())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("checkpoint %s: %w", d.path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// quickCheck runs PRAGMA quick_check: a database damaged while the
// follower was down (a disk error, someone writing to it) must not be
// carried forward by change sets that assume it is intact.
func (d *db) quickCheck(ctx context.Context) error {
	rows, err := d.conn.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return fmt.Errorf("quick_check %s: %w", d.path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if line != "ok" {
			return fmt.Errorf("quick_check %s: %s", d.path, line)
		}
	}
	return rows.Err()
}

// pageIter yields the page images of one transaction in any order and
// io.EOF after the last.
type pageIter func() (pgno uint32, data []byte, err error)

// lockPage is the page holding the byte at offset 1 GiB, which SQLite
// uses for file locks and never stores data in. The pager refuses to
// fetch it (SQLITE_CORRUPT), so sqlite_dbpage cannot write it; it holds
// nothing a reader needs, so skipping its image loses nothing.
func lockPage(pageSize int) uint32 { return uint32(1<<30/pageSize) + 1 }

// apply writes one source transaction in one SQLite write transaction:
// every page image of next, then the database size set to size pages.
// Either all of it commits or none of it does.
//
// How sqlite_dbpage behaves here, checked against SQLite's dbpage.c:
//
//   - An INSERT fetches the page through the pager and marks it dirty, so
//     in WAL mode the image goes to the WAL at COMMIT, as any write does:
//     readers with an open read transaction keep their snapshot
//     (TestReaderKeepsItsSnapshot proves it).
//   - Writing a page past the end grows the database to it.
//   - INSERT (n, NULL) truncates the database to n-1 pages at COMMIT, but
//     only if no page is written after it in the same transaction; it is
//     therefore the last statement.
//   - When page 1 is written, the pager sets its change counter and
//     "version valid for" fields (offsets 24 and 92) as it does for any
//     commit, so the header's page count (offset 28, from the source's
//     own page 1) stays trusted. The schema cookie (offset 40) comes from
//     the source: a reader whose cached schema is older reloads it.
//     Those three header fields are the only bytes in which the follower
//     differs from the source; sqlite3's .sha3sum does not cover them.
//   - SQLite's b-tree layer does not see these writes: its idea of the
//     database size stays what it was at BEGIN. That matters only to
//     auto_vacuum=FULL, which vacuums at COMMIT by the free-page count on
//     page 1; a committed source state has none, so it does nothing
//     (TestAutoVacuumSource).
//   - The connection must not be in defensive mode, which refuses writes
//     to sqlite_dbpage; modernc.org/sqlite does not turn it on.
func (d *db) apply(ctx context.Context, size uint32, next pageIter) (err error) {
	if _, err := d.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			// A rollback that fails leaves SQLite to roll back when the
			// connection closes; the error that made it is the one to
			// report.
			d.conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var have uint32
	if err := d.conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&have); err != nil {
		return fmt.Errorf("page count: %w", err)
	}
	stmt, err := d.conn.PrepareContext(ctx, "INSERT INTO sqlite_dbpage(pgno, data) VALUES(?, ?)")
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer stmt.Close()
	lock := lockPage(d.pageSize)
	for {
		pgno, data, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if len(data) != d.pageSize {
			return fmt.Errorf("a %d-byte page where the database has %d-byte pages: %w", len(data), d.pageSize, errShape)
		}
		if pgno == lock {
			continue
		}
		if _, err := stmt.ExecContext(ctx, pgno, data); err != nil {
			return fmt.Errorf("write page %d: %w", pgno, err)
		}
		have = max(have, pgno)
	}
	switch {
	case have > size:
		if _, err := stmt.ExecContext(ctx, size+1, nil); err != nil {
			return fmt.Errorf("truncate to %d pages: %w", size, err)
		}
	case have < size:
		// Every page past the old end is new in the transaction that grew
		// the database, so its image is in the change set. A size its
		// pages do not reach would leave zeros where SQLite expects
		// pages.
		return fmt.Errorf("the transaction gives the database %d pages, its pages reach %d: %w", size, have, errShape)
	}
	if _, err := d.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// copyFrom replaces the whole content of the database with the database
// file at src, of pages pages, in one transaction: readers see the old
// state until it commits and the new one after, nothing in between.
func (d *db) copyFrom(ctx context.Context, src string, pages uint32) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, d.pageSize)
	pgno := uint32(0)
	next := func() (uint32, []byte, error) {
		if pgno == pages {
			return 0, nil, io.EOF
		}
		if _, err := io.ReadFull(f, buf); err != nil {
			return 0, nil, fmt.Errorf("read page %d of %s: %w", pgno+1, src, err)
		}
		pgno++
		return pgno, buf, nil
	}
	return d.apply(ctx, pages, next)
}
