package wal

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

var (
	// ErrCorrupt means the log holds a frame that passes every check SQLite
	// makes yet cannot have been written by SQLite.
	ErrCorrupt = errors.New("wal: corrupt log")
	// ErrChanged means a frame read by ReadPage is no longer the frame the
	// scan verified. The transaction must be read again from its Start.
	ErrChanged = errors.New("wal: frame changed since it was scanned")
)

// PageRef locates the latest copy of one page within a transaction. It
// carries the checksums the scan verified, so that [Reader.ReadPage] can
// prove the bytes it returns are the ones that were verified.
type PageRef struct {
	// Pgno is the database page number, from 1.
	Pgno uint32
	// Offset is the byte offset in the log of the frame holding the page;
	// the page bytes start FrameHeaderSize bytes later.
	Offset int64

	seed1, seed2 uint32 // running checksum before this frame
	sum1, sum2   uint32 // running checksum after it, as stored in the frame
}

// Txn is one committed transaction.
type Txn struct {
	// Start is the position of the transaction's first frame, and End the
	// position after its commit frame, from which reading continues.
	Start, End Position
	// Commit is the database size in pages after the transaction.
	Commit uint32
	// Frames is the number of frames the transaction wrote, counting
	// pages written more than once.
	Frames int
	// Pages holds one reference per page the transaction left in the
	// database, sorted by page number: the latest frame for each page.
	// Pages beyond Commit are left out: the commit truncates the database
	// below them, so they are not part of the committed state.
	Pages []PageRef
	// Data, when not nil, holds the bytes of each page of Pages, in the
	// same order, as the scan read and verified them: the caller need not
	// read them again with ReadPage. It points into the Reader's buffer,
	// good only until the next call to Next or Recheck. It is nil for a
	// transaction whose frames were too many to hold at once (over
	// maxHeldBytes); ReadPage reads those pages.
	Data [][]byte
}

// Reader yields the committed transactions of one log generation, in order.
// Next is not safe for concurrent use; ReadPage is (see there).
type Reader struct {
	f io.ReaderAt

	// Fixed for the life of the Reader, so ReadPage may run concurrently
	// with Next.
	bigEndian    bool
	pageSize     int
	salt1, salt2 uint32
	lockPage     uint32

	pos Position // advanced by Next
	// ahead holds whole frames read from aheadOff on, so that a scan
	// costs one read per readAheadBytes rather than one per frame. While
	// a transaction is scanned it keeps every frame read of it (up to
	// maxHeldBytes, growing aheadBuf as needed), so that the transaction's
	// pages can be handed over as they were verified (Txn.Data).
	ahead    []byte
	aheadBuf []byte
	aheadOff int64
	// data is the storage of the last Txn.Data.
	data [][]byte
	// checkedAt is where the last check was made, and lastRun how far
	// the calls to Next after it read before they found nothing more: how
	// much the next check reads ahead (see check).
	checkedAt, lastRun int64
	// continued is set while Next's last call returned a transaction: the
	// next call then skips the header check (see Next).
	continued bool
}

// readAheadBytes is how much of the log a scan reads at once, and
// maxHeldBytes the most it holds to keep one transaction's frames
// together.
const (
	readAheadBytes = 256 << 10
	maxHeldBytes   = 4 << 20
)

// NewReader returns a Reader positioned at the first frame of the log
// generation that hdr, as returned by ReadHeader, describes.
func NewReader(f io.ReaderAt, hdr Header) *Reader {
	return newReader(f, hdr.BigEndian, hdr.Start())
}

// Resume returns a Reader that continues from pos, a position earlier
// returned by this package for the same log file. It returns a
// [*BreakError] when the log no longer continues from pos; other errors are
// I/O errors.
func Resume(f io.ReaderAt, pos Position) (*Reader, error) {
	r := newReader(f, false, pos)
	hdr, err := r.check()
	if err != nil {
		return nil, err
	}
	r.bigEndian = hdr.BigEndian
	return r, nil
}

func newReader(f io.ReaderAt, bigEndian bool, pos Position) *Reader {
	r := &Reader{f: f, bigEndian: bigEndian, pageSize: pos.PageSize, salt1: pos.Salt1, salt2: pos.Salt2, pos: pos}
	if pos.valid() {
		r.lockPage = LockPage(pos.PageSize)
		fs := int(pos.FrameSize())
		r.aheadBuf = make([]byte, max(1, readAheadBytes/fs)*fs)
	}
	return r
}

// Position returns where the committed prefix read so far ends: the End of
// the last transaction Next returned, or where the Reader started. After
// Next returns io.EOF it is the end of the log's committed prefix.
func (r *Reader) Position() Position { return r.pos }

// Recheck makes the Reader what [Resume] would return for its Position,
// keeping its buffers: it forgets what it read ahead, which the log may
// have changed since, and its next call to Next checks the header and the
// frame before the Position again. A caller that comes back to the log
// after a while calls it before Next.
func (r *Reader) Recheck() {
	r.ahead, r.continued = nil, false
}

// Next returns the next committed transaction. It returns io.EOF when the
// log holds no further complete committed transaction; calling Next again
// later picks up transactions committed since. It returns a [*BreakError]
// when the log no longer continues from Position, and wraps ErrCorrupt
// when a verified frame cannot have come from SQLite.
//
// Next checks the header and the frame before Position, then verifies
// each frame it reads. The check is skipped when the previous call returned
// a transaction: the frames that follow must then carry the same salts and
// continue the running checksum of the frame before them, which no frame
// of another generation or another log does, so a log that changed since
// shows as io.EOF at once, and as a break on the call after. It rereads the
// frames of a transaction that is still being written on every call until
// that transaction commits.
func (r *Reader) Next() (Txn, error) {
	if !r.continued {
		hdr, err := r.check()
		if err != nil {
			return Txn{}, err
		}
		if hdr.BigEndian != r.bigEndian {
			// Same salts, other byte order: not a log SQLite continued.
			return Txn{}, &BreakError{Reason: BreakHeader, Pos: r.pos, Header: hdr,
				Err: errors.New("checksum byte order changed")}
		}
	}
	txn, err := r.scan()
	r.continued = err == nil
	if err != nil {
		// What was read ahead may end in a frame still being written.
		r.ahead = nil
		r.lastRun = r.pos.Offset - r.checkedAt
	}
	return txn, err
}

// frameAt returns the frame at offset off, from what was read ahead when
// it holds the frame, or reads ahead from off. It returns io.EOF when the
// log holds no whole frame at off.
//
// from is where the transaction being scanned starts. While *held is
// true, every frame from there to off is in the read-ahead: a read ahead
// then keeps them, at the front of the buffer, and frameAt sets *held to
// false when it cannot (they would not fit in maxHeldBytes).
func (r *Reader) frameAt(off, from int64, held *bool) ([]byte, error) {
	fs := r.pos.FrameSize()
	if off >= r.aheadOff && off+fs <= r.aheadOff+int64(len(r.ahead)) {
		return r.ahead[off-r.aheadOff : off-r.aheadOff+fs], nil
	}
	keep := int64(0)
	if *held && from < off {
		keep = off - from
		if from < r.aheadOff || off > r.aheadOff+int64(len(r.ahead)) || keep+fs > maxHeldBytes {
			*held, keep = false, 0
		}
	}
	if keep > 0 {
		if size := int64(len(r.aheadBuf)); 2*keep > size && size < maxHeldBytes {
			// The transaction fills half the buffer: one twice as large,
			// within maxHeldBytes, holds it and reads ahead after it, so
			// that what is kept is copied a bounded number of times.
			grown := make([]byte, min(2*size, maxHeldBytes)/fs*fs)
			copy(grown, r.ahead[from-r.aheadOff:off-r.aheadOff])
			r.aheadBuf = grown
		} else {
			copy(r.aheadBuf, r.ahead[from-r.aheadOff:off-r.aheadOff])
		}
	}
	n, err := r.f.ReadAt(r.aheadBuf[keep:], off)
	r.ahead, r.aheadOff = r.aheadBuf[:keep+int64(n)-int64(n)%fs], off-keep
	if int64(len(r.ahead)) >= keep+fs {
		return r.ahead[keep : keep+fs], nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, io.EOF
	}
	return nil, err
}

// check verifies that the log still continues from r.pos and returns its
// header.
func (r *Reader) check() (Header, error) {
	pos := r.pos
	if !pos.valid() {
		return Header{}, &BreakError{Reason: BreakPosition, Pos: pos}
	}
	hdr, err := ReadHeader(r.f)
	switch {
	case errors.Is(err, ErrNoHeader):
		return Header{}, &BreakError{Reason: BreakTruncated, Pos: pos, Err: err}
	case errors.Is(err, ErrBadHeader):
		return Header{}, &BreakError{Reason: BreakHeader, Pos: pos, Err: err}
	case err != nil:
		return Header{}, err
	}
	if reason := compareHeader(hdr, pos); reason != 0 {
		return Header{}, &BreakError{Reason: reason, Pos: pos, Header: hdr}
	}
	if pos.Offset == HeaderSize {
		if hdr.Sum1 != pos.Sum1 || hdr.Sum2 != pos.Sum2 {
			return Header{}, &BreakError{Reason: BreakOverwritten, Pos: pos, Header: hdr}
		}
		return hdr, nil
	}

	// The header matching is not enough: a copy of the log taken from
	// another machine, or an older backup restored over the database, can
	// carry the same salts with different frames, and a log cut short keeps
	// its header. The frame that ends at pos must still be there and still
	// carry the checksum we hold. Committed frames never change within one
	// generation, so a different checksum means a different log. One read
	// brings that frame and reads ahead the frames after it: about twice
	// as far as the calls after the last check got, for a log appended to
	// a few frames at a time need not read the whole read-ahead each time
	// (past its end a log holds frames of older generations, which are
	// read only to be refused). A scan that goes further reads on in
	// full runs.
	fs := pos.FrameSize()
	ahead := r.aheadBuf[:min(int64(len(r.aheadBuf)), max(4*fs, (2*r.lastRun+2*fs)/fs*fs))]
	r.checkedAt = pos.Offset
	n, err := r.f.ReadAt(ahead, pos.Offset-fs)
	r.ahead, r.aheadOff = r.aheadBuf[:int64(n)-int64(n)%fs], pos.Offset-fs
	if int64(len(r.ahead)) < fs {
		r.ahead = nil
		if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return Header{}, r.tailError(hdr, err)
	}
	last := r.ahead[:FrameHeaderSize]
	be := binary.BigEndian
	if be.Uint32(last[8:12]) != pos.Salt1 || be.Uint32(last[12:16]) != pos.Salt2 ||
		be.Uint32(last[16:20]) != pos.Sum1 || be.Uint32(last[20:24]) != pos.Sum2 {
		return Header{}, &BreakError{Reason: BreakOverwritten, Pos: pos, Header: hdr}
	}
	return hdr, nil
}

func (r *Reader) tailError(hdr Header, err error) error {
	if errors.Is(err, io.EOF) {
		return &BreakError{Reason: BreakTruncated, Pos: r.pos, Header: hdr}
	}
	return fmt.Errorf("wal: read frame before %v: %w", r.pos, err)
}

// scan reads frames from r.pos up to and including the next commit frame.
func (r *Reader) scan() (Txn, error) {
	be := binary.BigEndian
	start := r.pos
	off := start.Offset
	s1, s2 := start.Sum1, start.Sum2
	var refs []PageRef
	held := true
	for {
		frame, err := r.frameAt(off, start.Offset, &held)
		if errors.Is(err, io.EOF) {
			return Txn{}, io.EOF
		}
		if err != nil {
			return Txn{}, fmt.Errorf("wal: read frame at offset %d: %w", off, err)
		}
		h := frame[:FrameHeaderSize]
		pgno := be.Uint32(h[0:4])
		if be.Uint32(h[8:12]) != start.Salt1 || be.Uint32(h[12:16]) != start.Salt2 || pgno == 0 {
			return Txn{}, io.EOF
		}
		c1, c2 := checksum(r.bigEndian, s1, s2, h[:8])
		c1, c2 = checksum(r.bigEndian, c1, c2, frame[FrameHeaderSize:])
		if c1 != be.Uint32(h[16:20]) || c2 != be.Uint32(h[20:24]) {
			return Txn{}, io.EOF
		}
		if pgno == r.lockPage {
			return Txn{}, fmt.Errorf("wal: frame at offset %d writes page %d, the lock page, which SQLite never writes: %w", off, pgno, ErrCorrupt)
		}
		refs = append(refs, PageRef{Pgno: pgno, Offset: off, seed1: s1, seed2: s2, sum1: c1, sum2: c2})
		s1, s2 = c1, c2
		off += int64(len(frame))
		commit := be.Uint32(h[4:8])
		if commit == 0 {
			continue
		}
		end := start
		end.Offset, end.Sum1, end.Sum2 = off, s1, s2
		r.pos = end
		txn := Txn{Start: start, End: end, Commit: commit, Frames: len(refs), Pages: latest(refs, commit)}
		if held {
			r.data = r.data[:0]
			for _, ref := range txn.Pages {
				at := ref.Offset - r.aheadOff + FrameHeaderSize
				r.data = append(r.data, r.ahead[at:at+int64(r.pageSize):at+int64(r.pageSize)])
			}
			txn.Data = r.data
		}
		return txn, nil
	}
}

// latest keeps, for each page number up to commit, the last frame that
// wrote it. refs must be in log order. It reuses refs' storage.
func latest(refs []PageRef, commit uint32) []PageRef {
	// A stable sort keeps frames of one page in log order, so the last of
	// each run is the latest.
	slices.SortStableFunc(refs, func(a, b PageRef) int { return cmp.Compare(a.Pgno, b.Pgno) })
	out := refs[:0]
	for i, ref := range refs {
		if ref.Pgno > commit {
			break
		}
		if i+1 < len(refs) && refs[i+1].Pgno == ref.Pgno {
			continue
		}
		out = append(out, ref)
	}
	return slices.Clip(out)
}

// Restarted reports whether the log now begins with the header of
// another generation than the one r reads. SQLite writes a new header
// when it restarts the log, which it does only once every frame of the
// log is in the database file.
func (r *Reader) Restarted() (bool, error) {
	h, err := ReadHeader(r.f)
	if errors.Is(err, ErrNoHeader) || errors.Is(err, ErrBadHeader) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return h.Salt1 != r.salt1 || h.Salt2 != r.salt2, nil
}

// ReadPage reads the page ref points to into p, which must be exactly one
// page long. It checks the frame again against the checksums the scan
// verified and returns an error wrapping ErrChanged if they differ: SQLite
// may have reused that part of the log since (after a checkpoint, if nothing
// held it back), or, rarely, the scan saw a transaction while SQLite was
// still rewriting its checksums. Either way the bytes are not returned as
// valid; read the transaction again from its Start (with Resume), which
// reports a break if the log moved on.
//
// ReadPage may be called concurrently with itself and with Next if the
// underlying io.ReaderAt allows concurrent reads (an *os.File does).
func (r *Reader) ReadPage(ref PageRef, p []byte) error {
	if len(p) != r.pageSize {
		return fmt.Errorf("wal: read page %d: buffer is %d bytes, page size is %d", ref.Pgno, len(p), r.pageSize)
	}
	// One read of the whole frame; the page is copied out of it.
	bp := framePool.Get().(*[]byte)
	defer framePool.Put(bp)
	frame := slices.Grow((*bp)[:0], FrameHeaderSize+r.pageSize)[:FrameHeaderSize+r.pageSize]
	*bp = frame
	err := readFull(r.f, frame, ref.Offset)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("wal: read page %d at offset %d: log is shorter: %w", ref.Pgno, ref.Offset, ErrChanged)
	}
	if err != nil {
		return fmt.Errorf("wal: read page %d at offset %d: %w", ref.Pgno, ref.Offset, err)
	}
	h := frame[:FrameHeaderSize]
	copy(p, frame[FrameHeaderSize:])
	be := binary.BigEndian
	c1, c2 := checksum(r.bigEndian, ref.seed1, ref.seed2, h[:8])
	c1, c2 = checksum(r.bigEndian, c1, c2, p)
	if be.Uint32(h[0:4]) != ref.Pgno ||
		be.Uint32(h[8:12]) != r.salt1 || be.Uint32(h[12:16]) != r.salt2 ||
		be.Uint32(h[16:20]) != ref.sum1 || be.Uint32(h[20:24]) != ref.sum2 ||
		c1 != ref.sum1 || c2 != ref.sum2 {
		return fmt.Errorf("wal: read page %d at offset %d: %w", ref.Pgno, ref.Offset, ErrChanged)
	}
	return nil
}

// framePool holds ReadPage's frame buffers, which concurrent calls cannot
// share.
var framePool = sync.Pool{New: func() any { return new([]byte) }}

// readFull reads exactly len(b) bytes at off. It returns io.EOF when the
// file ends first, whatever the io.ReaderAt reported for the short read.
func readFull(f io.ReaderAt, b []byte, off int64) error {
	n, err := f.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return io.EOF
	}
	return err
}
