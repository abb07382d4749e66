package capture

import "encoding/binary"

// logEnd is what SQLite's shared-memory index says of the log, read
// without any lock: it can be stale by the time it is used, so it only
// ever decides whether an attempt is worth making, never what is safe.
type logEnd struct {
	salt1, salt2 uint32 // the log generation the index describes
	frames       int64  // committed frames in the log (mxFrame)
	backfilled   int64  // frames already copied into the database (nBackfill)
}

// logEnd reads the header of the -shm file beside the database: two
// copies of the 48-byte index header, then the checkpoint info, whose
// first field is nBackfill. Integers are in the machine's byte order; the
// salts are copied raw from the log header, which is big-endian.
//
// It reads through the descriptor openConns opened, never a new one:
// closing any descriptor of a file drops every POSIX lock the process
// holds on it, and ferry's read transactions are such locks on this file.
func (c *sqliteConns) logEnd() (logEnd, bool) {
	if c.shm == nil {
		return logEnd{}, false
	}
	var b [100]byte
	if _, err := c.shm.ReadAt(b[:], 0); err != nil {
		return logEnd{}, false
	}
	ne := binary.NativeEndian
	if b[12] == 0 { // isInit: nobody has built the index yet
		return logEnd{}, false
	}
	return logEnd{
		frames:     int64(ne.Uint32(b[16:20])),
		salt1:      binary.BigEndian.Uint32(b[32:36]),
		salt2:      binary.BigEndian.Uint32(b[36:40]),
		backfilled: int64(ne.Uint32(b[96:100])),
	}, true
}
