package segment

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Writer streams transactions into a segment. Its memory is the zstd
// window and a few small buffers, whatever the size of the segment.
//
// Calls go Begin, Page..., Commit for each txid from the header's first to
// its last, then Close. The first error is sticky: every later call
// returns it, and the output must be discarded.
type Writer struct {
	w    *countWriter
	enc  *zstd.Encoder
	h    hash.Hash
	hdr  Header
	err  error
	body uint64 // decoded body bytes written

	next     uint64 // txid the next Begin must carry
	inTxn    bool
	dbSize   uint32
	lastPgno uint32
	txnPages uint32
	pages    uint64
	scratch  [txnRecordSize]byte
	sum      [sha256.Size]byte

	// unchecked lets tests in this package write segments that break the
	// rules, to show that a Reader refuses them.
	unchecked bool
}

// NewWriter writes h as the segment's header to w and returns a Writer for
// its transactions. The caller names the txid range up front, as the
// segment's key does, so that a reader can bound its work from the header
// alone.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("new segment: %w", err)
	}
	cw := &countWriter{w: w}
	hdr := h.marshal()
	if _, err := w.Write(hdr[:]); err != nil {
		return nil, fmt.Errorf("write segment header: %w", err)
	}
	enc, err := getEncoder(cw)
	if err != nil {
		return nil, fmt.Errorf("new segment: %w", err)
	}
	sw := &Writer{w: cw, enc: enc, h: sha256.New(), hdr: h, next: h.First}
	sw.h.Write(hdr[:])
	return sw, nil
}

// Begin starts the transaction txid, which committed at t and left the
// database dbSize pages long.
func (w *Writer) Begin(txid uint64, t time.Time, dbSize uint32) error {
	if w.err != nil {
		return w.err
	}
	if !w.unchecked {
		switch {
		case w.inTxn:
			return w.fail(fmt.Errorf("begin txid %d: txid %d is not committed", txid, w.next))
		case txid != w.next || txid > w.hdr.Last:
			return w.fail(fmt.Errorf("begin txid %d: expected txid %d of %d..%d", txid, w.next, w.hdr.First, w.hdr.Last))
		case dbSize == 0:
			return w.fail(fmt.Errorf("begin txid %d: database size is 0 pages", txid))
		case t.Before(time.Unix(0, 0)) || t.After(time.Unix(0, 1<<63-1)):
			return w.fail(fmt.Errorf("begin txid %d: commit time %s cannot be stored", txid, t))
		}
	}
	b := w.scratch[:txnRecordSize]
	b[0] = tagTxn
	binary.LittleEndian.PutUint64(b[1:], txid)
	binary.LittleEndian.PutUint64(b[9:], uint64(t.UnixNano()))
	binary.LittleEndian.PutUint32(b[17:], dbSize)
	if err := w.write(b); err != nil {
		return err
	}
	w.inTxn, w.dbSize, w.lastPgno, w.txnPages = true, dbSize, 0, 0
	return nil
}

// Page adds page pgno's image to the current transaction. Pages must come
// in strictly ascending order: the capture keeps only the last image of a
// page a transaction wrote, and the order makes that checkable.
func (w *Writer) Page(pgno uint32, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if !w.unchecked {
		switch {
		case !w.inTxn:
			return w.fail(fmt.Errorf("page %d outside a transaction", pgno))
		case pgno == 0 || pgno > w.dbSize:
			return w.fail(fmt.Errorf("txid %d: page %d outside the database's %d pages", w.next, pgno, w.dbSize))
		case pgno <= w.lastPgno:
			return w.fail(fmt.Errorf("txid %d: page %d after page %d; pages go in ascending order, once each", w.next, pgno, w.lastPgno))
		case len(data) != w.hdr.PageSize:
			return w.fail(fmt.Errorf("txid %d: page %d is %d bytes, page size is %d", w.next, pgno, len(data), w.hdr.PageSize))
		case w.pages >= MaxPages:
			return w.fail(fmt.Errorf("txid %d: segment already holds %d pages, the most one may", w.next, w.pages))
		}
	}
	b := w.scratch[:pageRecordHead]
	b[0] = tagPage
	binary.LittleEndian.PutUint32(b[1:], pgno)
	if err := w.write(b); err != nil {
		return err
	}
	if err := w.write(data); err != nil {
		return err
	}
	w.lastPgno = pgno
	w.txnPages++
	w.pages++
	return nil
}

// Commit ends the current transaction.
func (w *Writer) Commit() error {
	if w.err != nil {
		return w.err
	}
	if !w.inTxn && !w.unchecked {
		return w.fail(errors.New("commit outside a transaction"))
	}
	b := w.scratch[:commitRecordHead]
	b[0] = tagCommit
	binary.LittleEndian.PutUint32(b[1:], w.txnPages)
	if err := w.write(b); err != nil {
		return err
	}
	if err := w.write(w.h.Sum(w.sum[:0])); err != nil {
		return err
	}
	w.inTxn = false
	w.next++
	return nil
}

// Close ends the compressed body and writes the trailer. It fails, and the
// output must be discarded, unless every txid of the header was committed.
func (w *Writer) Close() error {
	if w.err == nil && !w.unchecked {
		switch {
		case w.inTxn:
			w.fail(fmt.Errorf("close: txid %d is not committed", w.next))
		case w.next != w.hdr.Last+1:
			w.fail(fmt.Errorf("close: txids %d..%d committed, header says %d..%d", w.hdr.First, w.next-1, w.hdr.First, w.hdr.Last))
		}
	}
	if err := w.enc.Close(); err != nil && w.err == nil {
		w.fail(fmt.Errorf("compress segment: %w", err))
	} else if err == nil {
		putEncoder(w.enc)
	}
	if w.err != nil {
		return w.err
	}
	t := trailer{
		txns:    w.next - w.hdr.First,
		pages:   w.pages,
		bodyLen: w.body,
		compLen: uint64(w.w.n),
		compCRC: w.w.crc,
	}
	head := t.marshalHead()
	w.h.Write(head[:])
	out := append(head[:], w.h.Sum(nil)...)
	if _, err := w.w.w.Write(out); err != nil {
		return w.fail(fmt.Errorf("write segment trailer: %w", err))
	}
	w.err = errors.New("segment writer is closed")
	return nil
}

func (w *Writer) write(p []byte) error {
	w.h.Write(p)
	if _, err := w.enc.Write(p); err != nil {
		return w.fail(fmt.Errorf("write segment: %w", err))
	}
	w.body += uint64(len(p))
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// countWriter counts and checksums the compressed body on its way out.
type countWriter struct {
	w   io.Writer
	n   int64
	crc uint32
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

// encoders keeps zstd encoders between segments: each holds a history
// buffer of twice the window, worth reusing rather than reallocating for
// every change set. A sync.Pool would not do: it empties at every garbage
// collection, and a capture under load collects more often than it writes
// a change set. Two are kept, the most that write at once in a
// replicator (a change set and a compaction).
var encoders = make(chan *zstd.Encoder, 2)

func putEncoder(enc *zstd.Encoder) {
	enc.Reset(nil)
	select {
	case encoders <- enc:
	default:
	}
}

func getEncoder(w io.Writer) (*zstd.Encoder, error) {
	select {
	case enc := <-encoders:
		enc.Reset(w)
		return enc, nil
	default:
	}
	// SpeedFastest compresses pages about as well as the default level
	// here (WAL pages are mostly B-tree cells and free space) at 1.5 times
	// its speed. The full history buffer, rather than zstd's low-memory
	// one, spares a copy of the whole window for every 128 KiB block once
	// a change set outgrows the window.
	return zstd.NewWriter(w,
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(encoderWindow),
		zstd.WithEncoderCRC(false),
		zstd.WithEncoderLevel(zstd.SpeedFastest))
}
