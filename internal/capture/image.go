package capture

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ferrydb/ferry/internal/wal"
)

// errImageMoved means a log frame the image needed was rewritten while a
// snapshot read it: the log restarted under it. The snapshot is abandoned
// and taken again later.
var errImageMoved = errors.New("the log moved on while the snapshot was read")

// image is the database as of one log position: the database file with
// the latest committed frame of each page, up to that position, laid over
// it. It is what SQLite itself shows a reader whose read mark is that
// position, and it stays that while ferry's read transaction holds
// checkpoints back (see the package documentation).
//
// image is an io.ReaderAt that allows concurrent calls, as snapshot.Write
// requires.
type image struct {
	db       *os.File
	log      *wal.Reader // any reader of the overlay's generation; nil when overlay is empty
	overlay  map[uint32]wal.PageRef
	pageSize int
	pages    uint32
}

func (im *image) size() int64 { return int64(im.pageSize) * int64(im.pages) }

// ReadAt reads the image. Bytes that lie past the end of the database file
// and in no frame read as zeros: the only such page SQLite allows is the
// lock page at 1 GiB, which it never writes.
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
	ps := int64(im.pageSize)
	var buf []byte
	n := 0
	for n < len(p) {
		at := off + int64(n)
		pgno := uint32(at/ps) + 1
		in := at % ps
		want := min(int64(len(p)-n), ps-in)
		dst := p[n : n+int(want)]
		if ref, ok := im.overlay[pgno]; ok {
			if buf == nil {
				buf = make([]byte, im.pageSize)
			}
			if err := im.log.ReadPage(ref, buf); err != nil {
				if errors.Is(err, wal.ErrChanged) {
					return n, fmt.Errorf("%w: %v", errImageMoved, err)
				}
				return n, err
			}
			copy(dst, buf[in:])
		} else if err := readFileAt(im.db, dst, at); err != nil {
			return n, err
		}
		n += len(dst)
	}
	return n, eof
}

// readFileAt fills p from f at off, with zeros past the end of f.
func readFileAt(f *os.File, p []byte, off int64) error {
	m, err := f.ReadAt(p, off)
	if m == len(p) {
		return nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read database file at offset %d: %w", off, err)
	}
	clear(p[m:])
	return nil
}
