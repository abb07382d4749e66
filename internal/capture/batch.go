package capture

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/internal/segment"
)

// batchName is the file, in the spool directory, that holds the pages of
// the transactions captured since the last change set was spooled.
//
// Pages are copied out of the log as soon as a transaction is seen rather
// than kept as references: a reference is only good while its log
// generation lives, and the segment writer needs the batch's whole txid
// range before the first byte. The file is scratch: it is not fsynced,
// and a restart captures its transactions again from the saved position.
const batchName = "capture-batch"

// Limits past which a batch becomes a change set at once, whatever the
// sync interval. A restore downloads, verifies and decodes a whole segment
// even to stop at its first transaction, and an upload is retried whole,
// so segments stay small enough for both to be cheap.
const (
	defaultBatchBytes = 16 << 20
	maxBatchTxns      = 100_000
)

// txnHeaderSize is a transaction's record in the batch file: txid u64,
// commit time i64, database size u32, page count u32.
const txnHeaderSize = 8 + 8 + 4 + 4

// batch accumulates transactions for the next change set.
type batch struct {
	maxBytes int64
	f        *os.File
	w        *heldWriter
	size     int64 // bytes written, buffered ones included
	pageSize int
	first    uint64
	last     uint64
	txns     int
	opened   time.Time
	scratch  [txnHeaderSize]byte
}

func openBatch(spoolDir string, maxBytes int64) (*batch, error) {
	f, err := os.OpenFile(filepath.Join(spoolDir, batchName), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open capture batch: %w", err)
	}
	if maxBytes <= 0 {
		maxBytes = defaultBatchBytes
	}
	return &batch{maxBytes: maxBytes, f: f, w: &heldWriter{f: f, limit: 256 << 10}}, nil
}

func (b *batch) empty() bool { return b.txns == 0 }

// full reports whether the batch should be shipped without waiting.
func (b *batch) full() bool { return b.size >= b.maxBytes || b.txns >= maxBatchTxns }

// mark returns a point to roll back to if a transaction cannot be read
// whole.
func (b *batch) mark() int64 { return b.size }

// rollback forgets everything written after mark.
func (b *batch) rollback(mark int64) error {
	if mark >= b.w.flushed {
		// What goes is all still in memory: no write is needed, so a
		// disk without room cannot make a rollback fail.
		b.w.buf = b.w.buf[:mark-b.w.flushed]
		b.size = mark
		return nil
	}
	b.w.buf = b.w.buf[:0]
	if err := b.f.Truncate(mark); err != nil {
		return err
	}
	if _, err := b.f.Seek(mark, io.SeekStart); err != nil {
		return err
	}
	b.w.flushed, b.size = mark, mark
	return nil
}

// begin starts transaction txid, which has npages pages. The batch takes
// the page size of its first transaction; the capture ships a batch before
// the page size can change.
func (b *batch) begin(txid uint64, at time.Time, dbSize uint32, npages, pageSize int) error {
	if b.txns == 0 {
		b.first, b.pageSize, b.opened = txid, pageSize, time.Now()
	} else if pageSize != b.pageSize || txid != b.last+1 {
		return fmt.Errorf("capture batch: txid %d with %d-byte pages after txid %d with %d-byte pages", txid, pageSize, b.last, b.pageSize)
	}
	h := b.scratch[:]
	binary.LittleEndian.PutUint64(h[0:], txid)
	binary.LittleEndian.PutUint64(h[8:], uint64(at.UnixNano()))
	binary.LittleEndian.PutUint32(h[16:], dbSize)
	binary.LittleEndian.PutUint32(h[20:], uint32(npages))
	return b.write(h)
}

// page adds one page of the current transaction.
func (b *batch) page(pgno uint32, data []byte) error {
	var h [4]byte
	binary.LittleEndian.PutUint32(h[:], pgno)
	if err := b.write(h[:]); err != nil {
		return err
	}
	return b.write(data)
}

// commit ends transaction txid.
func (b *batch) commit(txid uint64) {
	b.last = txid
	b.txns++
}

func (b *batch) write(p []byte) error {
	n, err := b.w.Write(p)
	b.size += int64(n)
	if err != nil {
		return fmt.Errorf("write capture batch: %w", err)
	}
	return nil
}

// heldWriter buffers the batch file's writes. Unlike bufio.Writer, whose
// first error sticks for good, it keeps whatever a failed write could not
// put on disk and tries again at the next flush: a spool disk that was
// full and has room again must not leave the batch failing forever.
type heldWriter struct {
	f       *os.File
	limit   int
	buf     []byte
	flushed int64 // bytes in the file
}

func (w *heldWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if len(w.buf) >= w.limit {
		return len(p), w.Flush()
	}
	return len(p), nil
}

// Flush writes what is held; on failure what was not written stays held.
func (w *heldWriter) Flush() error {
	n, err := w.f.Write(w.buf)
	w.flushed += int64(n)
	w.buf = w.buf[:copy(w.buf, w.buf[n:])]
	return err
}

// reset empties the batch.
func (b *batch) reset() error {
	b.txns, b.first, b.last = 0, 0, 0
	return b.rollback(0)
}

// writeSegment writes the batch to w as one segment.
func (b *batch) writeSegment(w io.Writer) error {
	if err := b.w.Flush(); err != nil {
		return fmt.Errorf("write capture batch: %w", err)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(b.f, 0, b.size), 256<<10)
	sw, err := segment.NewWriter(w, segment.Header{PageSize: b.pageSize, First: b.first, Last: b.last})
	if err != nil {
		return err
	}
	var h [txnHeaderSize]byte
	page := make([]byte, 4+b.pageSize)
	for range b.txns {
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return fmt.Errorf("read capture batch: %w", err)
		}
		txid := binary.LittleEndian.Uint64(h[0:])
		at := time.Unix(0, int64(binary.LittleEndian.Uint64(h[8:])))
		if err := sw.Begin(txid, at, binary.LittleEndian.Uint32(h[16:])); err != nil {
			return err
		}
		for range binary.LittleEndian.Uint32(h[20:]) {
			if _, err := io.ReadFull(r, page); err != nil {
				return fmt.Errorf("read capture batch: %w", err)
			}
			if err := sw.Page(binary.LittleEndian.Uint32(page), page[4:]); err != nil {
				return err
			}
		}
		if err := sw.Commit(); err != nil {
			return err
		}
	}
	return sw.Close()
}

func (b *batch) close() error {
	err := b.f.Close()
	os.Remove(b.f.Name())
	return err
}
