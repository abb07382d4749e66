package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ferrydb/ferry/internal/layout"
)

// Version is the format version this build writes and reads.
const Version = 1

// FlagZstd marks a body compressed as one zstd stream. Version 1 writes and
// accepts only this flag.
const FlagZstd = 1

// Limits on what a segment may hold. A Writer refuses to exceed them, so
// the caller starts a new segment, and a Reader refuses a segment that
// claims more: without them a hostile header or a decompression bomb could
// keep a restore busy for days.
const (
	// MaxTxns caps last-first+1.
	MaxTxns = 1 << 24
	// MaxPages caps the pages in one segment, over all its transactions:
	// 64 GiB of 4 KiB pages, enough for any sync interval.
	MaxPages = 1 << 24
	// MinPageSize and MaxPageSize bound SQLite's page sizes.
	MinPageSize = 512
	MaxPageSize = 65536
)

const (
	headerSize  = 40
	trailerSize = 80

	// txnRecordSize is 'T' txid time dbsize; pageRecordHead is 'P' pgno;
	// commitRecordHead is 'C' npages, followed by the 32-byte chain.
	txnRecordSize    = 1 + 8 + 8 + 4
	pageRecordHead   = 1 + 4
	commitRecordHead = 1 + 4
	chainSize        = 32

	tagTxn    = 'T'
	tagPage   = 'P'
	tagCommit = 'C'

	// encoderWindow is the window the Writer compresses with: wide enough
	// that a page rewritten by many transactions of a segment compresses
	// against its earlier image, small enough to keep a writer's memory
	// flat. decoderMaxWindow leaves a later writer room to grow while
	// refusing a hostile frame that asks for a huge window.
	encoderWindow    = 4 << 20
	decoderMaxWindow = 16 << 20
	decoderMaxMemory = 64 << 20
)

var (
	headerMagic  = [8]byte{'F', 'E', 'R', 'R', 'Y', 'S', 'E', 'G'}
	trailerMagic = [8]byte{'F', 'E', 'R', 'R', 'Y', 'E', 'N', 'D'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// Header is what a segment's fixed header says.
type Header struct {
	PageSize int
	First    uint64 // first txid
	Last     uint64 // last txid
}

// Validate reports whether a Writer may write, and a Reader accept, h.
func (h Header) Validate() error {
	if !ValidPageSize(h.PageSize) {
		return fmt.Errorf("page size %d is not a power of two from %d to %d", h.PageSize, MinPageSize, MaxPageSize)
	}
	if h.First == 0 {
		return errors.New("first txid is 0; txids start at 1")
	}
	if h.Last < h.First {
		return fmt.Errorf("last txid %d is before first txid %d", h.Last, h.First)
	}
	if h.Last-h.First >= MaxTxns {
		return fmt.Errorf("txids %d..%d are more than %d transactions", h.First, h.Last, MaxTxns)
	}
	return nil
}

// ValidPageSize reports whether n is a page size SQLite can use.
func ValidPageSize(n int) bool {
	return n >= MinPageSize && n <= MaxPageSize && n&(n-1) == 0
}

// Txn is one transaction's record: what the database looked like once it
// committed.
type Txn struct {
	TXID   uint64
	Time   time.Time // commit time, UTC
	DBSize uint32    // database size in pages after the commit
}

// Page is one page image of a transaction.
type Page struct {
	Pgno uint32
	Data []byte
}

// Info describes a whole, verified segment.
type Info struct {
	Header
	Txns      uint64
	Pages     uint64
	FirstTime time.Time // commit time of the first transaction
	LastTime  time.Time // commit time of the last transaction
	DBSize    uint32    // database size in pages after the last transaction
	Size      int64     // encoded size in bytes
	SHA256    [32]byte  // the trailer's checksum
}

func (h Header) marshal() [headerSize]byte {
	var b [headerSize]byte
	copy(b[0:8], headerMagic[:])
	binary.LittleEndian.PutUint16(b[8:], Version)
	binary.LittleEndian.PutUint16(b[10:], FlagZstd)
	binary.LittleEndian.PutUint32(b[12:], uint32(h.PageSize))
	binary.LittleEndian.PutUint64(b[16:], h.First)
	binary.LittleEndian.PutUint64(b[24:], h.Last)
	binary.LittleEndian.PutUint32(b[36:], crc32.Checksum(b[:36], castagnoli))
	return b
}

// parseHeader checks magic, then version and flags, then the checksum, in
// that order: a later version may move everything after the version field,
// so its checksum cannot be checked by this one.
func parseHeader(b []byte, key string) (Header, error) {
	corrupt := func(format string, args ...any) error {
		return &CorruptError{Key: key, Offset: 0, Reason: fmt.Sprintf(format, args...)}
	}
	if [8]byte(b[0:8]) != headerMagic {
		return Header{}, corrupt("not a ferry segment: magic %q", b[0:8])
	}
	version := binary.LittleEndian.Uint16(b[8:])
	flags := binary.LittleEndian.Uint16(b[10:])
	if version != Version || flags != FlagZstd {
		return Header{}, versionError(key, version, flags)
	}
	if got, want := crc32.Checksum(b[:36], castagnoli), binary.LittleEndian.Uint32(b[36:]); got != want {
		return Header{}, corrupt("header checksum %08x, header says %08x", got, want)
	}
	if r := binary.LittleEndian.Uint32(b[32:]); r != 0 {
		return Header{}, corrupt("reserved header field is %#x, not 0", r)
	}
	h := Header{
		PageSize: int(binary.LittleEndian.Uint32(b[12:])),
		First:    binary.LittleEndian.Uint64(b[16:]),
		Last:     binary.LittleEndian.Uint64(b[24:]),
	}
	if err := h.Validate(); err != nil {
		return Header{}, corrupt("header: %v", err)
	}
	return h, nil
}

// trailer is the fixed record after the compressed body.
type trailer struct {
	txns, pages      uint64
	bodyLen, compLen uint64
	compCRC          uint32
}

// marshalHead encodes the trailer's fields before its SHA-256: the bytes
// the SHA-256 covers.
func (t trailer) marshalHead() [48]byte {
	var b [48]byte
	copy(b[0:8], trailerMagic[:])
	binary.LittleEndian.PutUint64(b[8:], t.txns)
	binary.LittleEndian.PutUint64(b[16:], t.pages)
	binary.LittleEndian.PutUint64(b[24:], t.bodyLen)
	binary.LittleEndian.PutUint64(b[32:], t.compLen)
	binary.LittleEndian.PutUint32(b[40:], t.compCRC)
	return b
}

func newDecoder() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(decoderMaxWindow),
		zstd.WithDecoderMaxMemory(decoderMaxMemory))
}

// Key returns the object key of the segment holding txids first..last:
// layout.SegmentKey, here because the format and its key go together.
func Key(first, last uint64) string { return layout.SegmentKey(first, last) }
