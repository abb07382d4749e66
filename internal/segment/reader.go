package segment

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Options configure a Reader.
type Options struct {
	// Key is the segment's object key, named in every error.
	Key string
}

type readState int

const (
	stateBetween readState = iota // before a transaction record, or before the end
	stateInTxn                    // between a transaction's 'T' and its 'C'
	stateDone                     // the trailer has been verified
)

// Reader streams a segment's transactions out, page by page, in memory
// bounded by the page size and the decoder's window limit. It checks
// every rule of the format as it goes and fails with a *CorruptError (or
// an error matching ErrVersion) at the first byte that breaks one.
//
// A page handed out is not yet proven intact: only the commit record that
// ends its transaction proves it. Apply a transaction only after NextPage
// has returned io.EOF for it, or verify the whole segment first (Open).
type Reader struct {
	opts  Options
	hdr   Header
	tail  *tailReader
	dec   *zstd.Decoder
	h     hash.Hash
	off   int64 // decoded bytes consumed: header, then body
	state readState
	err   error

	cur      Txn
	lastPgno uint32
	txnPages uint32
	next     uint64
	pages    uint64
	info     Info

	page    []byte
	scratch [chainSize]byte
}

// NewReader reads and checks the header of the segment in r and returns a
// Reader positioned before its first transaction. Close releases it.
func NewReader(r io.Reader, opts Options) (*Reader, error) {
	var hb [headerSize]byte
	if n, err := io.ReadFull(r, hb[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, &CorruptError{Key: opts.Key, Offset: int64(n), Reason: fmt.Sprintf("truncated: %d bytes, shorter than the %d-byte header", n, headerSize)}
		}
		return nil, fmt.Errorf("read segment %s: %w", keyName(opts.Key), err)
	}
	hdr, err := parseHeader(hb[:], opts.Key)
	if err != nil {
		return nil, err
	}
	tail := newTailReader(r)
	dec, err := newDecoder()
	if err != nil {
		return nil, fmt.Errorf("read segment %s: %w", keyName(opts.Key), err)
	}
	if err := dec.Reset(tail); err != nil {
		dec.Close()
		if tail.err != nil {
			return nil, fmt.Errorf("read segment %s: %w", keyName(opts.Key), tail.err)
		}
		return nil, &CorruptError{Key: opts.Key, Offset: headerSize, Reason: fmt.Sprintf("compressed body: %v", err)}
	}
	sr := &Reader{
		opts: opts, hdr: hdr, tail: tail, dec: dec, h: sha256.New(), off: headerSize,
		next: hdr.First, page: make([]byte, hdr.PageSize),
	}
	sr.h.Write(hb[:])
	sr.info.Header = hdr
	return sr, nil
}

// Header returns the segment's header.
func (r *Reader) Header() Header { return r.hdr }

// Next skips what is left of the current transaction and returns the next
// one. After the last transaction it checks the trailer and returns
// io.EOF only if the whole segment is intact.
func (r *Reader) Next() (Txn, error) {
	for r.state == stateInTxn {
		if _, err := r.NextPage(); err == io.EOF {
			break
		} else if err != nil {
			return Txn{}, err
		}
	}
	if r.err != nil {
		return Txn{}, r.err
	}
	if r.state == stateDone {
		return Txn{}, io.EOF
	}
	tag := r.scratch[:1]
	if err := r.read(tag, true); err != nil {
		if err == io.EOF {
			return Txn{}, r.finish()
		}
		return Txn{}, err
	}
	if tag[0] != tagTxn {
		return Txn{}, r.corrupt(-1, "record tag %#x where a transaction should start", tag[0])
	}
	if r.next > r.hdr.Last {
		return Txn{}, r.corrupt(-1, "a transaction after txid %d, the last the header names", r.hdr.Last)
	}
	b := r.scratch[1:txnRecordSize]
	if err := r.read(b, false); err != nil {
		return Txn{}, err
	}
	txid := binary.LittleEndian.Uint64(b[0:])
	nanos := int64(binary.LittleEndian.Uint64(b[8:]))
	dbSize := binary.LittleEndian.Uint32(b[16:])
	switch {
	case txid != r.next:
		return Txn{}, r.corrupt(-txnRecordSize, "txid %d where txid %d should follow", txid, r.next)
	case nanos < 0:
		return Txn{}, r.corrupt(-txnRecordSize, "txid %d: commit time %d before 1970", txid, nanos)
	case dbSize == 0:
		return Txn{}, r.corrupt(-txnRecordSize, "txid %d: database size 0 pages", txid)
	}
	r.cur = Txn{TXID: txid, Time: time.Unix(0, nanos).UTC(), DBSize: dbSize}
	r.state, r.lastPgno, r.txnPages = stateInTxn, 0, 0
	if txid == r.hdr.First {
		r.info.FirstTime = r.cur.Time
	}
	return r.cur, nil
}

// NextPage returns the current transaction's next page. The page's Data is
// valid until the next call. At the transaction's commit record it checks
// the chain checksum and returns io.EOF: the transaction is then proven
// intact, and so is every one before it.
func (r *Reader) NextPage() (Page, error) {
	if r.err != nil {
		return Page{}, r.err
	}
	if r.state != stateInTxn {
		return Page{}, errors.New("segment: NextPage outside a transaction")
	}
	tag := r.scratch[:pageRecordHead]
	if err := r.read(tag, false); err != nil {
		return Page{}, err
	}
	n := binary.LittleEndian.Uint32(tag[1:])
	switch tag[0] {
	case tagPage:
		switch {
		case n == 0 || n > r.cur.DBSize:
			return Page{}, r.corrupt(-4, "txid %d: page %d outside the database's %d pages", r.cur.TXID, n, r.cur.DBSize)
		case n <= r.lastPgno:
			return Page{}, r.corrupt(-4, "txid %d: page %d after page %d (pages must ascend, once each)", r.cur.TXID, n, r.lastPgno)
		case r.pages >= MaxPages:
			return Page{}, r.corrupt(-4, "more than %d pages", MaxPages)
		}
		if err := r.read(r.page, false); err != nil {
			return Page{}, err
		}
		r.lastPgno = n
		r.txnPages++
		r.pages++
		return Page{Pgno: n, Data: r.page}, nil
	case tagCommit:
		if n != r.txnPages {
			return Page{}, r.corrupt(-4, "txid %d: commit record counts %d pages, transaction has %d", r.cur.TXID, n, r.txnPages)
		}
		want := r.h.Sum(nil)
		got := r.scratch[:chainSize]
		if err := r.read(got, false); err != nil {
			return Page{}, err
		}
		if !bytes.Equal(got, want) {
			return Page{}, r.corrupt(-chainSize, "txid %d: chain checksum does not match the bytes before it", r.cur.TXID)
		}
		r.state = stateBetween
		r.next++
		r.info.LastTime, r.info.DBSize = r.cur.Time, r.cur.DBSize
		return Page{}, io.EOF
	default:
		return Page{}, r.corrupt(-pageRecordHead, "txid %d: record tag %#x inside a transaction", r.cur.TXID, tag[0])
	}
}

// Info returns what the Reader has seen. It describes the whole segment
// once Next has returned io.EOF.
func (r *Reader) Info() Info { return r.info }

// Close releases the decoder. It does not close the source.
func (r *Reader) Close() error {
	if r.dec != nil {
		r.dec.Close()
		r.dec = nil
	}
	if r.err == nil && r.state != stateDone {
		r.err = errors.New("segment reader is closed")
	}
	return nil
}

// read fills p from the decoded body and adds it to the running checksum.
// With eofOK a clean end of the body before p's first byte returns io.EOF;
// any other shortfall is corruption.
func (r *Reader) read(p []byte, eofOK bool) error {
	if r.dec == nil {
		return r.fail(errors.New("segment reader is closed"))
	}
	n, err := io.ReadFull(r.dec, p)
	r.h.Write(p[:n])
	r.off += int64(n)
	switch {
	case err == nil:
		return nil
	case r.tail.err != nil:
		// The source failed (a reset connection, a closed file): that is
		// not damage in the segment, and the caller may retry.
		return r.fail(fmt.Errorf("read segment %s: %w", keyName(r.opts.Key), r.tail.err))
	case err == io.EOF && eofOK:
		return io.EOF
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return r.corrupt(0, "truncated: body ends inside a record")
	default:
		return r.corrupt(0, "compressed body: %v", err)
	}
}

// finish checks the trailer once the decoded body has ended cleanly.
func (r *Reader) finish() error {
	if r.next != r.hdr.Last+1 {
		return r.corrupt(0, "body ends after txid %d, header says the last is %d", r.next-1, r.hdr.Last)
	}
	var probe [1]byte
	if n, _ := r.tail.Read(probe[:]); n != 0 {
		return r.corrupt(0, "bytes after the end of the compressed body")
	}
	if r.tail.err != nil {
		return r.fail(fmt.Errorf("read segment %s: %w", keyName(r.opts.Key), r.tail.err))
	}
	rest := r.tail.rest()
	if len(rest) != trailerSize {
		return r.corrupt(0, "truncated: %d trailer bytes, want %d", len(rest), trailerSize)
	}
	want := trailer{
		txns:    r.next - r.hdr.First,
		pages:   r.pages,
		bodyLen: uint64(r.off - headerSize),
		compLen: uint64(r.tail.n),
		compCRC: r.tail.crc,
	}
	head := want.marshalHead()
	got := rest[:48]
	switch {
	case [8]byte(got[0:8]) != trailerMagic:
		return r.corrupt(0, "trailer magic %q", got[0:8])
	case binary.LittleEndian.Uint64(got[8:]) != want.txns:
		return r.corrupt(8, "trailer counts %d transactions, body has %d", binary.LittleEndian.Uint64(got[8:]), want.txns)
	case binary.LittleEndian.Uint64(got[16:]) != want.pages:
		return r.corrupt(16, "trailer counts %d pages, body has %d", binary.LittleEndian.Uint64(got[16:]), want.pages)
	case binary.LittleEndian.Uint64(got[24:]) != want.bodyLen:
		return r.corrupt(24, "trailer says the body decodes to %d bytes, it decoded to %d", binary.LittleEndian.Uint64(got[24:]), want.bodyLen)
	case binary.LittleEndian.Uint64(got[32:]) != want.compLen:
		return r.corrupt(32, "trailer says the compressed body is %d bytes, it is %d", binary.LittleEndian.Uint64(got[32:]), want.compLen)
	case binary.LittleEndian.Uint32(got[44:]) != 0:
		return r.corrupt(44, "reserved trailer field is %#x, not 0", binary.LittleEndian.Uint32(got[44:]))
	case !bytes.Equal(got, head[:]):
		return r.corrupt(40, "compressed body checksum %08x, trailer says %08x", want.compCRC, binary.LittleEndian.Uint32(got[40:]))
	}
	r.h.Write(got)
	sum := r.h.Sum(nil)
	if !bytes.Equal(sum, rest[48:]) {
		return r.corrupt(48, "segment checksum does not match the trailer's")
	}
	r.state = stateDone
	r.info.Txns, r.info.Pages = want.txns, want.pages
	r.info.Size = headerSize + r.tail.n + trailerSize
	copy(r.info.SHA256[:], sum)
	r.dec.Close()
	r.dec = nil
	return io.EOF
}

// corrupt records a *CorruptError at the current decoded offset plus rel.
func (r *Reader) corrupt(rel int64, format string, args ...any) error {
	return r.fail(&CorruptError{Key: r.opts.Key, Offset: r.off + rel, Reason: fmt.Sprintf(format, args...)})
}

func (r *Reader) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return r.err
}
