package wal

import "encoding/binary"

// checksum continues SQLite's log checksum from (s1, s2) over b and returns
// the new pair.
//
// The checksum is a Fletcher-like pair of 32-bit sums over 8-byte words,
// each word read as two 32-bit integers in the byte order the log header
// names. It is cumulative: the header's checksum seeds the first frame's,
// and every frame's seeds the next, so a frame is valid only if everything
// before it in the log is unchanged. len(b) must be a multiple of 8 (every
// input here is: 24 header bytes, 8 frame-header bytes, a page); any
// trailing partial word is ignored.
//
// Addition wraps modulo 2^32, as the C original's unsigned arithmetic does.
func checksum(bigEndian bool, s1, s2 uint32, b []byte) (uint32, uint32) {
	if bigEndian {
		for len(b) >= 8 {
			s1 += binary.BigEndian.Uint32(b[0:4]) + s2
			s2 += binary.BigEndian.Uint32(b[4:8]) + s1
			b = b[8:]
		}
		return s1, s2
	}
	for len(b) >= 8 {
		s1 += binary.LittleEndian.Uint32(b[0:4]) + s2
		s2 += binary.LittleEndian.Uint32(b[4:8]) + s1
		b = b[8:]
	}
	return s1, s2
}
