package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Errors Open returns for a database it cannot replicate; each is wrapped
// in a message naming the path.
var (
	ErrNoDatabase = errors.New("no such database")
	ErrNotSQLite  = errors.New("not a SQLite database")
	ErrNotWAL     = errors.New("not in WAL mode")
)

// dbHeaderSize is the part of page 1 that SQLite calls the database header.
const dbHeaderSize = 100

var sqliteMagic = []byte("SQLite format 3\x00")

// dbHeader is what ferry needs from a database header.
type dbHeader struct {
	pageSize int
	// pages is the in-header database size, or 0 when the header says it
	// is not to be trusted (SQLite versions before 3.7.0 left it stale).
	pages uint32
}

// openDB opens the database file once for the life of the Replicator (see
// the package documentation on POSIX locks) and checks that it is a SQLite
// database in WAL mode.
func openDB(path string) (*os.File, dbHeader, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, dbHeader{}, fmt.Errorf("capture %s: %w", path, ErrNoDatabase)
	}
	if err != nil {
		return nil, dbHeader{}, fmt.Errorf("capture %s: %w", path, err)
	}
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		f.Close()
		return nil, dbHeader{}, fmt.Errorf("capture %s: %w: not a regular file", path, ErrNotSQLite)
	}
	h, err := readDBHeader(f)
	if err != nil {
		f.Close()
		return nil, dbHeader{}, fmt.Errorf("capture %s: %w", path, err)
	}
	return f, h, nil
}

// readDBHeader reads and checks the header of the database file f.
func readDBHeader(f io.ReaderAt) (dbHeader, error) {
	var b [dbHeaderSize]byte
	n, err := f.ReadAt(b[:], 0)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			if n == 0 {
				return dbHeader{}, fmt.Errorf("%w: the file is empty (a database in WAL mode has a header saying so)", ErrNotWAL)
			}
			return dbHeader{}, fmt.Errorf("%w: %d bytes, shorter than a database header", ErrNotSQLite, n)
		}
		return dbHeader{}, fmt.Errorf("read database header: %w", err)
	}
	return parseDBHeader(b[:])
}

func parseDBHeader(b []byte) (dbHeader, error) {
	if string(b[:16]) != string(sqliteMagic) {
		return dbHeader{}, fmt.Errorf("%w: its first bytes are not \"SQLite format 3\"", ErrNotSQLite)
	}
	be := binary.BigEndian
	ps := int(be.Uint16(b[16:18]))
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps > 65536 || ps&(ps-1) != 0 {
		return dbHeader{}, fmt.Errorf("%w: page size %d in its header", ErrNotSQLite, ps)
	}
	// Bytes 18 and 19 are the write and read format versions: 1 for a
	// rollback journal, 2 for WAL. SQLite sets both when the database is
	// switched with PRAGMA journal_mode=WAL, and the setting persists.
	if b[18] != 2 || b[19] != 2 {
		return dbHeader{}, fmt.Errorf("%w (it uses a rollback journal); switch it once with PRAGMA journal_mode=WAL", ErrNotWAL)
	}
	h := dbHeader{pageSize: ps}
	// The in-header size is valid only when the change counter matches
	// the version-valid-for number.
	if be.Uint32(b[24:28]) == be.Uint32(b[92:96]) {
		h.pages = be.Uint32(b[28:32])
	}
	return h, nil
}

// filePages returns the size of the database file f in pages.
func filePages(f *os.File, pageSize int) (uint32, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return uint32(st.Size() / int64(pageSize)), nil
}
