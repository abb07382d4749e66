package segment

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/ferrydb/ferry/internal/layout"
)

// BreakSize is the size of a break marker.
const BreakSize = 40

// breakMagic opens a break marker, where a segment has headerMagic.
var breakMagic = [8]byte{'F', 'E', 'R', 'R', 'Y', 'G', 'A', 'P'}

// MarshalBreak returns the break marker stored under
// layout.ChangeSetKey(txid) when a target's chain of change sets ends at
// txid-1: the replicator can no longer give that target txid in a change
// set (it refused one for good, the spool overflowed, the log broke), and
// carries the target on from a newer snapshot instead.
//
// A follower that holds txid-1 asks for that key for its next change set;
// a marker there tells it, with the same GET, to stop waiting and load a
// newer snapshot. Without it the follower would wait forever for a key
// nobody will write.
//
// Format, version 1 (little-endian, 40 bytes, the size of a segment's
// header so that one ranged read of a header reads either):
//
//	 0  8  magic "FERRYGAP"
//	 8  2  format version, 1
//	10  6  reserved, zero
//	16  8  txid, the first the chain lacks; the key names it too
//	24 12  reserved, zero
//	36  4  CRC32C (Castagnoli) of bytes 0..36
//
// The marker holds nothing that varies between attempts, so that a retry
// whose first answer was lost finds the very bytes it sent.
func MarshalBreak(txid uint64) []byte {
	b := make([]byte, BreakSize)
	copy(b[0:8], breakMagic[:])
	binary.LittleEndian.PutUint16(b[8:], Version)
	binary.LittleEndian.PutUint64(b[16:], txid)
	binary.LittleEndian.PutUint32(b[36:], crc32.Checksum(b[:36], castagnoli))
	return b
}

// ParseHead reads the first 40 bytes of an object stored under a
// change-set key: a segment's header or a break marker. Anything else
// fails with a *CorruptError naming key.
func ParseHead(b []byte, key string) (layout.Head, error) {
	if len(b) < headerSize {
		return layout.Head{}, &CorruptError{Key: key, Reason: fmt.Sprintf("%d bytes, shorter than a header", len(b))}
	}
	b = b[:headerSize]
	if [8]byte(b[0:8]) != breakMagic {
		h, err := parseHeader(b, key)
		if err != nil {
			return layout.Head{}, asCorrupt(err, key)
		}
		return layout.Head{First: h.First, Last: h.Last}, nil
	}
	corrupt := func(format string, args ...any) error {
		return &CorruptError{Key: key, Reason: "break marker: " + fmt.Sprintf(format, args...)}
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != Version {
		return layout.Head{}, corrupt("version %d (this ferry reads version %d)", v, Version)
	}
	if got, want := crc32.Checksum(b[:36], castagnoli), binary.LittleEndian.Uint32(b[36:]); got != want {
		return layout.Head{}, corrupt("checksum %08x, marker says %08x", got, want)
	}
	for _, r := range [][]byte{b[10:16], b[24:36]} {
		for _, c := range r {
			if c != 0 {
				return layout.Head{}, corrupt("a reserved field is not zero")
			}
		}
	}
	txid := binary.LittleEndian.Uint64(b[16:])
	if txid == 0 {
		return layout.Head{}, corrupt("txid 0; txids start at 1")
	}
	return layout.Head{First: txid, Break: true}, nil
}

// asCorrupt turns a header this build cannot read into damage: under a
// change-set key, a listing must not trust what it cannot read, whether
// bit rot or a newer ferry put it there.
func asCorrupt(err error, key string) error {
	if _, ok := err.(*CorruptError); ok {
		return err
	}
	return &CorruptError{Key: key, Reason: err.Error()}
}
