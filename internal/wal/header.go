package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Sizes and constants of the log format, as SQLite writes it.
const (
	// HeaderSize is the size of the log header at offset 0.
	HeaderSize = 32
	// FrameHeaderSize is the size of the header that precedes each page.
	FrameHeaderSize = 24
	// Version is the only log format version SQLite has ever written.
	Version = 3007000

	// MinPageSize and MaxPageSize bound the page sizes SQLite accepts.
	MinPageSize = 512
	MaxPageSize = 65536

	magicLittle = 0x377f0682
	magicBig    = 0x377f0683
)

var (
	// ErrNoHeader means the log is shorter than its header: empty because a
	// checkpoint truncated it, or just created and not yet written.
	ErrNoHeader = errors.New("wal: no header")
	// ErrBadHeader means the first 32 bytes are not a valid log header.
	// SQLite treats such a log as empty and overwrites it on the next write.
	ErrBadHeader = errors.New("wal: bad header")
)

// Header is the decoded log header. All fields are stored big-endian in the
// file whatever the checksum byte order.
type Header struct {
	// BigEndian reports the byte order of the checksum words (magic
	// 0x377f0683). SQLite writes its native order: little-endian on x86 and
	// most ARM machines. Readers must accept both.
	BigEndian bool
	// PageSize is the database page size in bytes.
	PageSize int
	// Seq is the checkpoint sequence number. SQLite increments it each time
	// it restarts the log from the beginning.
	Seq uint32
	// Salt1 and Salt2 identify one generation of the log: every frame
	// written in that generation repeats them. On a restart SQLite adds one
	// to Salt1 and draws a new random Salt2.
	Salt1, Salt2 uint32
	// Sum1 and Sum2 are the header checksum, which also seeds the running
	// checksum of the first frame.
	Sum1, Sum2 uint32
}

// ReadHeader reads and validates the log header at offset 0 of r.
//
// It returns an error matching ErrNoHeader when r holds fewer than
// HeaderSize bytes, and one matching ErrBadHeader when the bytes are not a
// header SQLite would accept.
func ReadHeader(r io.ReaderAt) (Header, error) {
	var b [HeaderSize]byte
	n, err := r.ReadAt(b[:], 0)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			return Header{}, fmt.Errorf("%w: %d bytes", ErrNoHeader, n)
		}
		return Header{}, fmt.Errorf("wal: read header: %w", err)
	}
	return parseHeader(b[:])
}

// parseHeader decodes and validates a header from the first HeaderSize bytes
// of b, which must hold at least that many.
//
// The checks are SQLite's own, in its order. It accepts only page sizes
// that are powers of two from 512 to 65536 written as themselves: the
// database header stores 65536 as 1, but the log header does not, and
// SQLite ignores a log whose header says 1. Accepting it here would yield
// transactions SQLite never applies.
func parseHeader(b []byte) (Header, error) {
	be := binary.BigEndian
	var h Header
	switch magic := be.Uint32(b[0:4]); magic {
	case magicLittle:
	case magicBig:
		h.BigEndian = true
	default:
		return Header{}, fmt.Errorf("%w: magic %#08x", ErrBadHeader, magic)
	}
	size := be.Uint32(b[8:12])
	if !validPageSize(size) {
		return Header{}, fmt.Errorf("%w: page size %d", ErrBadHeader, size)
	}
	h.PageSize = int(size)
	h.Seq = be.Uint32(b[12:16])
	h.Salt1 = be.Uint32(b[16:20])
	h.Salt2 = be.Uint32(b[20:24])
	h.Sum1 = be.Uint32(b[24:28])
	h.Sum2 = be.Uint32(b[28:32])
	if s1, s2 := checksum(h.BigEndian, 0, 0, b[:24]); s1 != h.Sum1 || s2 != h.Sum2 {
		return Header{}, fmt.Errorf("%w: header checksum mismatch", ErrBadHeader)
	}
	// SQLite refuses to open a database whose log has another version,
	// rather than ignoring the log; either way there is nothing to read.
	if v := be.Uint32(b[4:8]); v != Version {
		return Header{}, fmt.Errorf("%w: unsupported format version %d", ErrBadHeader, v)
	}
	return h, nil
}

// encode returns the header as SQLite would write it, with its checksum
// recomputed from the other fields.
func (h Header) encode() [HeaderSize]byte {
	be := binary.BigEndian
	var b [HeaderSize]byte
	magic := uint32(magicLittle)
	if h.BigEndian {
		magic = magicBig
	}
	be.PutUint32(b[0:4], magic)
	be.PutUint32(b[4:8], Version)
	be.PutUint32(b[8:12], uint32(h.PageSize))
	be.PutUint32(b[12:16], h.Seq)
	be.PutUint32(b[16:20], h.Salt1)
	be.PutUint32(b[20:24], h.Salt2)
	s1, s2 := checksum(h.BigEndian, 0, 0, b[:24])
	be.PutUint32(b[24:28], s1)
	be.PutUint32(b[28:32], s2)
	return b
}

// Start returns the position of the first frame of this log generation.
func (h Header) Start() Position {
	return Position{
		Offset:   HeaderSize,
		PageSize: h.PageSize,
		Seq:      h.Seq,
		Salt1:    h.Salt1,
		Salt2:    h.Salt2,
		Sum1:     h.Sum1,
		Sum2:     h.Sum2,
	}
}

// validPageSize reports whether n is a page size SQLite accepts in a log
// header.
func validPageSize[T int | uint32](n T) bool {
	return n >= MinPageSize && n <= MaxPageSize && n&(n-1) == 0
}

// LockPage returns the number of the database page that holds the byte at
// offset 1 GiB, where SQLite keeps its file-locking byte range. SQLite never
// writes that page; it exists in the file only when the database is larger
// than 1 GiB, and its content is meaningless. pageSize must be a valid page
// size.
func LockPage(pageSize int) uint32 {
	return uint32(pendingByte/pageSize + 1)
}

// pendingByte is the offset of SQLite's locking byte range.
const pendingByte = 1 << 30
