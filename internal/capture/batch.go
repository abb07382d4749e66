package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/internal/segment"
)

// batchName is the file, in the spool directory, that holds the pages of
// the transactions captured since the last change set was spooled, and
// batchName+"-2" the second such file, for the batch captured while the
// first is written as a change set (see flight).
//
// Pages are copied out of the log as soon as a transaction is seen rather
// than kept as references: a reference is only good while its log
// generation lives, and the segment writer needs the batch's whole txid
// range before the first byte. A batch holds them in memory while the
// process's bound allows (see batchmem.go) and spills to its file past
// that. The files are scratch: they are not fsynced, and a restart
// captures their transactions again from the saved position.
const batchName = "capture-batch"

// aheadName is the file, in the spool directory, that the change set of
// a batch in flight is written to.
const aheadName = "capture-ahead"

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
//
// A full batch is not written as a change set on the capture loop: it is
// sealed, and a goroutine of its own writes its change set (the SHA-256
// chain, the compression) while the capture reads on into a new batch on
// the other file. The batch in flight is ahead of the new one: the loop
// spools it (see Replicator.landFlight) before anything else of the
// batch, so change sets still go out in txid order, and the batch counts
// as not empty until it has.
type batch struct {
	dir      string
	name     string
	maxBytes int64
	f        *os.File
	data     *batchData
	pageSize int
	first    uint64
	last     uint64
	txns     int
	opened   time.Time
	scratch  [txnHeaderSize]byte

	// ahead is the batch in flight before this one, and spare the other
	// file's batch while idle; at most one of them is set.
	ahead *flight
	spare *batch

	// sealed is set on a batch in flight, and stays set until it is
	// spooled: end is where the capture stood after its last transaction,
	// and seg its change set, once the flight wrote it (nil if that
	// failed: writeSegment then writes it on the spot).
	sealed bool
	end    point
	seg    *os.File
	segLen int64

	// The buffers encode reads a spilled batch and a flight writes the
	// change set through, kept for the next change set: a capture under load
	// writes several a second, and each would otherwise allocate (and
	// clear) half a MiB.
	rd *bufio.Reader
	wr *bufio.Writer

	// straddle holds a record that lies across chunks of memory
	// while it is encoded.
	straddle []byte
}

// flight is a sealed batch whose change set is being written.
type flight struct {
	b    *batch
	done chan struct{} // closed once b.seg is set, or the writing failed
}

// openBatch opens the capture batch in spoolDir, which holds in memory
// what mem lets it.
func openBatch(spoolDir string, maxBytes int64, mem *memoryBudget) (*batch, error) {
	if maxBytes <= 0 {
		maxBytes = defaultBatchBytes
	}
	return newBatch(spoolDir, batchName, maxBytes, mem)
}

func newBatch(dir, name string, maxBytes int64, mem *memoryBudget) (*batch, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open capture batch: %w", err)
	}
	// A batch is full once past maxBytes, with the transaction that took
	// it there; a little over it stays in memory, a huge transaction
	// spills.
	data := newBatchData(f, mem, maxBytes+maxBytes/8)
	return &batch{dir: dir, name: name, maxBytes: maxBytes, f: f, data: data}, nil
}

// empty reports whether the batch holds no transaction, and none is in
// flight ahead of it.
func (b *batch) empty() bool { return b.txns == 0 && b.ahead == nil }

// full reports whether the batch should be shipped without waiting.
func (b *batch) full() bool { return b.data.size >= b.maxBytes || b.txns >= maxBatchTxns }

// mark returns a point to roll back to if a transaction cannot be read
// whole.
func (b *batch) mark() int64 { return b.data.size }

// rollback forgets everything written after mark.
func (b *batch) rollback(mark int64) error { return b.data.rollback(mark, 2*b.maxBytes) }

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

func (b *batch) write(p []byte) error { return b.data.write(p) }

// reset empties the batch, and gives up the one in flight ahead of it.
func (b *batch) reset() error {
	var errs []error
	if f := b.ahead; f != nil {
		<-f.done
		b.ahead = nil
		errs = append(errs, f.b.reset())
		b.spare = f.b
	}
	if b.seg != nil {
		b.seg.Close()
		errs = append(errs, os.Remove(b.seg.Name()))
		b.seg = nil
	}
	b.sealed, b.end = false, point{}
	b.txns, b.first, b.last = 0, 0, 0
	used := b.data.size
	err := b.rollback(0)
	b.data.emptied(used)
	return errors.Join(append(errs, err)...)
}

// seal hands the batch over to a flight that writes its change set, and
// returns the batch that captures on after it; end is where the capture
// stands. The batch must be full, and none in flight.
func (b *batch) seal(end point) (*batch, error) {
	next := b.spare
	if next == nil {
		name := batchName
		if b.name == batchName {
			name = batchName + "-2"
		}
		var err error
		if next, err = newBatch(b.dir, name, b.maxBytes, b.data.mem); err != nil {
			return nil, err
		}
	}
	b.spare = nil
	b.sealed, b.end = true, end
	f := &flight{b: b, done: make(chan struct{})}
	next.ahead = f
	go f.write()
	return next, nil
}

// write writes the change set of the flight's batch, to aheadName.
func (f *flight) write() {
	defer close(f.done)
	b := f.b
	seg, err := os.OpenFile(filepath.Join(b.dir, aheadName), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return
	}
	if b.wr == nil {
		b.wr = bufio.NewWriterSize(seg, 256<<10)
	}
	w := b.wr
	w.Reset(seg)
	if err = b.encode(w); err == nil {
		err = w.Flush()
	}
	w.Reset(nil)
	var n int64
	if err == nil {
		n, err = seg.Seek(0, io.SeekCurrent)
	}
	if err != nil {
		// The capture loop writes it again, and answers the error.
		seg.Close()
		os.Remove(seg.Name())
		return
	}
	b.seg, b.segLen = seg, n
}

// writeSegment writes the batch to w as one segment: the one its flight
// wrote, if any.
func (b *batch) writeSegment(w io.Writer) error {
	if b.seg != nil {
		if _, err := b.seg.Seek(0, io.SeekStart); err != nil {
			return err
		}
		// Into an *os.File, the copy does not leave the kernel.
		_, err := io.Copy(w, io.LimitReader(b.seg, b.segLen))
		return err
	}
	return b.encode(w)
}

// encode writes the batch to w as one segment.
func (b *batch) encode(w io.Writer) error {
	records, done := b.records()
	defer done()
	sw, err := segment.NewWriter(w, segment.Header{PageSize: b.pageSize, First: b.first, Last: b.last})
	if err != nil {
		return err
	}
	for range b.txns {
		h, err := records(txnHeaderSize)
		if err != nil {
			return fmt.Errorf("read capture batch: %w", err)
		}
		txid := binary.LittleEndian.Uint64(h[0:])
		at := time.Unix(0, int64(binary.LittleEndian.Uint64(h[8:])))
		npages := binary.LittleEndian.Uint32(h[20:])
		if err := sw.Begin(txid, at, binary.LittleEndian.Uint32(h[16:])); err != nil {
			return err
		}
		for range npages {
			page, err := records(4 + b.pageSize)
			if err != nil {
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

// records returns a function that reads the batch's next n bytes in
// place: the slice it returns is good until its next call. A batch held
// in memory is read where it lies, without a copy; one that spilled is
// read through a buffer. done ends the reading.
func (b *batch) records() (next func(n int) ([]byte, error), done func()) {
	if !b.data.spilled {
		if len(b.straddle) < 4+b.pageSize {
			b.straddle = make([]byte, 4+b.pageSize)
		}
		return b.data.memRecords(b.straddle), func() {}
	}
	if b.rd == nil {
		b.rd = bufio.NewReaderSize(nil, spillChunk)
	}
	r := b.rd
	r.Reset(b.data.reader())
	return func(n int) ([]byte, error) {
		p, err := r.Peek(n)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
		r.Discard(n)
		return p, nil
	}, func() { r.Reset(nil) }
}

// absorb appends the transactions of next, the batch after b, to b: a
// batch in flight whose change set could not be spooled takes the one
// captured after it back, so that the two go out as one change set, in
// order. next is left empty. On failure (next's file cannot be read) both
// are as they were.
func (b *batch) absorb(next *batch) error {
	if next.txns > 0 && b.txns > 0 && (next.pageSize != b.pageSize || next.first != b.last+1) {
		return fmt.Errorf("capture batch: txids %d..%d with %d-byte pages after txid %d with %d-byte pages", next.first, next.last, next.pageSize, b.last, b.pageSize)
	}
	mark := b.mark()
	// What b cannot write to its file it holds (see batchData).
	if _, err := io.Copy(writerFunc(b.data.write), next.data.reader()); err != nil {
		b.rollback(mark)
		return fmt.Errorf("read capture batch: %w", err)
	}
	if next.txns > 0 {
		if b.txns == 0 {
			b.first, b.pageSize, b.opened = next.first, next.pageSize, next.opened
		}
		b.last = next.last
		b.txns += next.txns
	}
	if b.seg != nil {
		b.seg.Close()
		os.Remove(b.seg.Name())
		b.seg = nil
	}
	b.sealed, b.end = false, point{}
	next.txns, next.first, next.last = 0, 0, 0
	next.rollback(0)
	b.spare = next
	return nil
}

// writerFunc is a writer that never fails: batchData holds what it could
// not write and tries again at its next flush.
type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	f(p)
	return len(p), nil
}

func (b *batch) close() error {
	var errs []error
	if f := b.ahead; f != nil {
		<-f.done
		b.ahead = nil
		errs = append(errs, f.b.close())
	}
	if b.spare != nil {
		errs = append(errs, b.spare.close())
		b.spare = nil
	}
	if b.seg != nil {
		b.seg.Close()
		os.Remove(b.seg.Name())
		b.seg = nil
	}
	b.data.free()
	errs = append(errs, b.f.Close())
	os.Remove(b.f.Name())
	return errors.Join(errs...)
}
