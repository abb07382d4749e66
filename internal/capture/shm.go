package capture

import (
	"encoding/binary"
	"os"
)

// logEnd is what SQLite's shared-memory index says of the log, read
// without any lock: it can be stale by the time it is used, so it only
// ever decides whether an attempt is worth making, never what is safe.
type logEnd struct {
	salt1, salt2 uint32 // the log generation the index describes
	frames       int64  // committed frames in the log (mxFrame)
	backfilled   int64  // frames already copied into the database (nBackfill)
}

// readLogEnd reads the header of the -shm file beside the database: two
// copies of the 48-byte index header, then the checkpoint info, whose
// first field is nBackfill. Integers are in the machine's byte order; the
// salts are copied raw from the log header, which is big-endian.
func readLogEnd(dbPath string) (logEnd, bool) {
	f, err := os.Open(dbPath + "-shm")
	if err != nil {
		return logEnd{}, false
	}
	defer f.Close()
	var b [100]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
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
