package wal

import (
	"bytes"
	"encoding/binary"
)

// The wal-index (the database's -shm file) starts with two copies of a
// 48-byte header, which SQLite writes in the byte order of the machine,
// the second copy first. A reader that finds the copies different, the
// header not initialised, or its checksum wrong, takes it for a write in
// progress; if it stays so, the connection rebuilds the index from the
// log (recovery), which needs SQLite's checkpoint lock.
const (
	// IndexHeaderSize is the size of both copies together.
	IndexHeaderSize = 2 * indexHeaderCopy

	indexHeaderCopy = 48
	indexIsInit     = 12 // byte offset of the isInit flag
	indexChecksumAt = 40 // byte offset of the checksum, which covers what precedes it
)

// CheckpointLockByte is the byte of the -shm file on which SQLite's unix
// VFS takes its checkpoint lock: its lock bytes start at 120, and the
// checkpoint lock is the second.
const CheckpointLockByte = 121

// IndexHeaderSettled reports whether b, the first IndexHeaderSize bytes
// of a -shm file, holds a wal-index header SQLite reads without recovery:
// two equal copies, initialised, with a right checksum. A writer leaves
// it unsettled for an instant while it updates it, and one that died in
// the middle leaves it so until a connection recovers the index.
func IndexHeaderSettled(b []byte) bool {
	if len(b) < IndexHeaderSize {
		return false
	}
	h := b[:indexHeaderCopy]
	if !bytes.Equal(h, b[indexHeaderCopy:IndexHeaderSize]) || h[indexIsInit] == 0 {
		return false
	}
	s1, s2 := checksum(nativeBigEndian, 0, 0, h[:indexChecksumAt])
	ne := binary.NativeEndian
	return s1 == ne.Uint32(h[indexChecksumAt:]) && s2 == ne.Uint32(h[indexChecksumAt+4:])
}

// nativeBigEndian is whether this machine stores integers big-endian, as
// SQLite then wrote the wal-index header.
var nativeBigEndian = binary.NativeEndian.Uint16([]byte{0, 1}) == 1
