package capture

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Errors Open returns for a database it cannot replicate; each is wrapped
// in a message naming the path.
var (
	ErrNoDatabase = errors.New("no such database")
	ErrNotSQLite  = errors.New("not a SQLite database")
	ErrNotWAL     = errors.New("not in WAL mode")
)

// statDB checks that path names a regular file and returns what identifies
// it, so that a database replaced under the same path is noticed.
//
// ferry never opens the database file itself, only through SQLite: SQLite
// locks it with fcntl locks, which a process loses, all of them, as soon as
// it closes any descriptor of the file, and a program that embeds ferry
// may have its own connections open to the same database.
func statDB(path string) (os.FileInfo, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("capture %s: %w", path, ErrNoDatabase)
	}
	if err != nil {
		return nil, fmt.Errorf("capture %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("capture %s: %w: not a regular file", path, ErrNotSQLite)
	}
	return st, nil
}

// checkMode turns what a read-only connection reports about the database
// (PRAGMA journal_mode and page_count, or the error reading them) into the
// error Open returns, or nil for a database in WAL mode.
func checkMode(mode string, pages int64, err error) error {
	if err != nil {
		var coded interface{ Code() int }
		if errors.As(err, &coded) && coded.Code()&0xff == sqliteNotADB || strings.Contains(err.Error(), "file is not a database") {
			return fmt.Errorf("%w: SQLite says: %v", ErrNotSQLite, err)
		}
		return fmt.Errorf("read the journal mode: %w", err)
	}
	if strings.EqualFold(mode, "wal") {
		return nil
	}
	if pages == 0 {
		return fmt.Errorf("%w: the file is empty, and a database in WAL mode says so in its header", ErrNotWAL)
	}
	return fmt.Errorf("%w (journal_mode is %s); switch it once with PRAGMA journal_mode=WAL", ErrNotWAL, mode)
}

// sqliteNotADB is SQLite's result code for a file that is not a database.
const sqliteNotADB = 26
