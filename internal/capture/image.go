package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"modernc.org/sqlite"

	"github.com/ferrydb/ferry/internal/wal"
)

// errImageMoved means a log frame the image needed was rewritten while a
// snapshot read it: the log restarted under it. The snapshot is abandoned
// and taken again later.
var errImageMoved = errors.New("the log moved on while the snapshot was read")

// image is the database as of one log position: the latest committed frame
// of each page in the current log generation up to that position, and,
// for every other page, the page as ferry's read transaction sees it.
//
// That is the database at the position, and it stays so for as long as the
// read transaction is held and not handed over: the transaction's read mark
// is at or before the position, so a page that no frame up to the
// position holds did not change between the mark and the position, and
// SQLite shows the transaction the same page for as long as it lasts.
//
// Such a page is read from the database file when this process's SQLite
// locks the file with open file description locks (sqlite.OFDLocking,
// which the ferry daemon turns on), and otherwise through SQLite's
// sqlite_dbpage table on the read transaction. Both give the same bytes:
// SQLite itself reads a page that no frame up to its read mark holds from
// the file, and a checkpoint writes no frame past that mark into it. The
// file is read only where closing a descriptor of it is harmless, which
// with the POSIX locks SQLite takes by default it is not: see statDB. A
// read of the file costs what reading the bytes costs; a query of
// sqlite_dbpage costs 10 to 40 µs a page, on one connection, which made a
// first snapshot of a large database run at a fraction of the speed of
// its upload.
//
// image is an io.ReaderAt that allows concurrent calls, as snapshot.Write
// requires.
type image struct {
	// file is the database file, opened when reading it is safe; nil
	// otherwise.
	file *os.File
	// page is SELECT data FROM sqlite_dbpage WHERE pgno=? on the read
	// transaction. One connection runs one statement at a time, so pageMu
	// serializes its use; hashing and compressing stay parallel.
	pageMu   sync.Mutex
	page     *sql.Stmt
	log      *wal.Reader // any reader of the overlay's generation; nil when overlay is empty
	overlay  map[uint32]wal.PageRef
	pageSize int
	pages    uint32
	lockPage uint32
	// fromFileAfterRestart counts the overlay's pages read as the read
	// transaction shows them because the log restarted (see readPage).
	fromFileAfterRestart atomic.Int64
}

// newImage returns the image of the database at path, db being the
// identity of the file the read transaction tx reads.
func newImage(ctx context.Context, path string, db os.FileInfo, tx *sql.Tx, log *wal.Reader, overlay map[uint32]wal.PageRef, pageSize int, pages uint32) (*image, error) {
	st, err := tx.PrepareContext(ctx, "SELECT data FROM sqlite_dbpage WHERE pgno=?")
	if err != nil {
		return nil, fmt.Errorf("read database pages: %w", err)
	}
	im := &image{page: st, log: log, overlay: overlay, pageSize: pageSize, pages: pages, lockPage: wal.LockPage(pageSize)}
	if fileReadable() {
		f, err := os.Open(path)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("read database pages: %w", err)
		}
		// A file put in the database's place since the transaction
		// began is not the one it reads: read through SQLite then.
		if fi, err := f.Stat(); err == nil && os.SameFile(fi, db) {
			im.file = f
		} else {
			f.Close()
		}
	}
	return im, nil
}

// fileReadable reports whether ferry may open and close descriptors of a
// database file that SQLite has open in this process; a variable for
// tests, which run the sqlite_dbpage path too.
var fileReadable = sqlite.OFDLockingEnabled

func (im *image) close() {
	im.page.Close()
	if im.file != nil {
		im.file.Close()
	}
}

func (im *image) size() int64 { return int64(im.pageSize) * int64(im.pages) }

// ReadAt reads the image.
func (im *image) ReadAt(p []byte, off int64) (int, error) {
	size := im.size()
	if off < 0 {
		return 0, fmt.Errorf("read image at offset %d: negative offset", off)
	}
	if off >= size {
		return 0, io.EOF
	}
	var eof error
	if rest := size - off; int64(len(p)) > rest {
		p, eof = p[:rest], io.EOF
	}
	if im.file != nil {
		if err := im.readFile(p, off); err != nil {
			return 0, err
		}
		return len(p), eof
	}
	ps := int64(im.pageSize)
	buf := make([]byte, im.pageSize)
	n := 0
	for n < len(p) {
		at := off + int64(n)
		pgno := uint32(at/ps) + 1
		in := at % ps
		dst := p[n : n+int(min(int64(len(p)-n), ps-in))]
		if err := im.readPage(pgno, buf); err != nil {
			return n, err
		}
		copy(dst, buf[in:])
		n += len(dst)
	}
	return n, eof
}

// readFile reads p at off from the database file, which holds every page
// of the image but those in the overlay and the lock page, and puts those
// in. A page past the file's end reads as zeros, as through sqlite_dbpage.
func (im *image) readFile(p []byte, off int64) error {
	n, err := im.file.ReadAt(p, off)
	if err != nil && err != io.EOF {
		return fmt.Errorf("read database pages: %w", err)
	}
	clear(p[n:])
	ps := int64(im.pageSize)
	var buf []byte
	for at := off - off%ps; at < off+int64(len(p)); at += ps {
		pgno := uint32(at/ps) + 1
		_, logged := im.overlay[pgno]
		if !logged && pgno != im.lockPage {
			continue
		}
		if buf == nil {
			buf = make([]byte, ps)
		}
		if err := im.readPage(pgno, buf); err != nil {
			return err
		}
		// The part of the page that p covers.
		from, to := max(at, off), min(at+ps, off+int64(len(p)))
		copy(p[from-off:to-off], buf[from-at:to-at])
	}
	return nil
}

// readPage reads page pgno into buf.
func (im *image) readPage(pgno uint32, buf []byte) error {
	if ref, ok := im.overlay[pgno]; ok {
		err := im.log.ReadPage(ref, buf)
		if err == nil || !errors.Is(err, wal.ErrChanged) {
			return err
		}
		restarted, rerr := im.log.Restarted()
		if rerr != nil {
			return fmt.Errorf("read database page %d: %w", pgno, rerr)
		}
		if !restarted {
			return fmt.Errorf("%w: %v", errImageMoved, err)
		}
		// The log restarted under the snapshot. While the read
		// transaction protects the log, SQLite restarts it only with
		// every frame in the database file and the transaction on slot
		// 0, which reads that file and keeps every checkpoint from
		// writing to it: the page as the transaction shows it is the
		// page at the image's position. (A checkpoint that copies the
		// whole log leaves ferry's next read transaction there, and the
		// application's next commit restarts the log.)
		im.fromFileAfterRestart.Add(1)
		return im.readStored(pgno, buf)
	}
	return im.readStored(pgno, buf)
}

// readStored reads page pgno, which no frame of the overlay holds, as
// the read transaction shows it.
func (im *image) readStored(pgno uint32, buf []byte) error {
	if pgno == im.lockPage {
		// SQLite never writes the lock page, and restores leave it as
		// zeros; its bytes in the file mean nothing.
		clear(buf)
		return nil
	}
	var data []byte
	im.pageMu.Lock()
	err := im.page.QueryRow(pgno).Scan(&data)
	if err == nil && len(data) == len(buf) {
		copy(buf, data)
	}
	im.pageMu.Unlock()
	switch {
	case errors.Is(err, sql.ErrNoRows):
		clear(buf)
		return nil
	case err != nil:
		return fmt.Errorf("read database page %d: %w", pgno, err)
	case len(data) != len(buf):
		return fmt.Errorf("read database page %d: %d bytes, page size is %d", pgno, len(data), len(buf))
	}
	return nil
}
