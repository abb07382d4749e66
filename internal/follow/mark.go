package follow

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/internal/durable"
)

// mark is what the follower records beside its database, in
// DB_PATH-ferry-follow, after each commit: the txid the database holds,
// and what the database must match for the record to be trusted.
//
// Why a file beside the database and not a row in it: the follower's
// database must stay equal to the source's content (ferry never adds rows
// to a database), and no header field of page 1 is free to hold a txid
// (the pager rewrites the change counter and its companions at every
// commit). An attached database would not commit atomically with the
// main one in WAL mode either.
//
// Why that is crash-safe: the order is COMMIT (fsynced: synchronous=FULL),
// then the mark, fsynced, so the mark is never ahead of the database. A
// crash between the two leaves the database one transaction past its
// mark, at txid N with a mark saying N-1. The restart applies txid N
// again, over the state that already holds it, and that is a no-op that
// readers cannot see: txid N writes the same image into every page it
// wrote before, and those images are what those pages hold in state N;
// every other page is untouched, and the size set is N's size again.
//
// The mark must never be more than one transaction behind, because
// applying N-1 over state N is not a no-op: readers would see a state
// mixing the two. Hence the file holds two slots and txid N goes into
// slot N%2, overwriting N-2 while N-1 stays whole in the other: a write
// torn by a power loss fails its checksum, and the reader falls back on
// N-1, one behind. A restore anew removes the file (durably) before it
// commits, so a crash there leaves no mark, and the next start restores
// anew rather than trust an old one.
type mark struct {
	Replica  string
	TXID     uint64
	Time     time.Time // commit time of TXID at the source
	PageSize int
}

// A slot, little-endian:
//
//	0   8  magic "FERRYFLW"
//	8   4  format version, 1
//	12  4  page size
//	16  8  txid
//	24  8  commit time, unix nanoseconds
//	32 32  SHA-256 of the replica URL
//	64  4  CRC32C of bytes 0..64
//
// Slots sit 512 bytes apart, one sector each, so a write to one cannot
// tear the other.
const (
	markVersion  = 1
	markSlotSize = 512
	markRecord   = 68
)

var (
	markMagic  = [8]byte{'F', 'E', 'R', 'R', 'Y', 'F', 'L', 'W'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

func markPath(dbPath string) string { return dbPath + "-ferry-follow" }

func (m mark) encode() []byte {
	b := make([]byte, markRecord)
	copy(b, markMagic[:])
	binary.LittleEndian.PutUint32(b[8:], markVersion)
	binary.LittleEndian.PutUint32(b[12:], uint32(m.PageSize))
	binary.LittleEndian.PutUint64(b[16:], m.TXID)
	binary.LittleEndian.PutUint64(b[24:], uint64(m.Time.UnixNano()))
	sum := sha256.Sum256([]byte(m.Replica))
	copy(b[32:64], sum[:])
	binary.LittleEndian.PutUint32(b[64:], crc32.Checksum(b[:64], castagnoli))
	return b
}

// decodeSlot returns the mark in b and the SHA-256 of its replica URL.
func decodeSlot(b []byte) (mark, [32]byte, bool) {
	var sum [32]byte
	if len(b) < markRecord || !bytes.Equal(b[:8], markMagic[:]) ||
		binary.LittleEndian.Uint32(b[8:]) != markVersion ||
		binary.LittleEndian.Uint32(b[64:]) != crc32.Checksum(b[:64], castagnoli) {
		return mark{}, sum, false
	}
	copy(sum[:], b[32:64])
	m := mark{
		PageSize: int(binary.LittleEndian.Uint32(b[12:])),
		TXID:     binary.LittleEndian.Uint64(b[16:]),
		Time:     time.Unix(0, int64(binary.LittleEndian.Uint64(b[24:]))).UTC(),
	}
	return m, sum, m.TXID > 0 && m.PageSize > 0
}

// readMark returns the newest whole mark of the database at dbPath, for
// replica: an error matching os.ErrNotExist when there is no mark file,
// and errForeignMark when the mark is another replica's.
func readMark(dbPath, replica string) (mark, error) {
	b, err := os.ReadFile(markPath(dbPath))
	if err != nil {
		return mark{}, err
	}
	var best mark
	var bestSum [32]byte
	for off := 0; off < len(b); off += markSlotSize {
		if m, sum, ok := decodeSlot(b[off:min(off+markSlotSize, len(b))]); ok && m.TXID > best.TXID {
			best, bestSum = m, sum
		}
	}
	if best.TXID == 0 {
		return mark{}, fmt.Errorf("%s holds no whole record", markPath(dbPath))
	}
	if bestSum != sha256.Sum256([]byte(replica)) {
		return mark{}, errForeignMark
	}
	best.Replica = replica
	return best, nil
}

// errForeignMark is a mark written while following another replica.
var errForeignMark = errors.New("the database followed another replica")

// markFile writes marks into the file beside one database.
type markFile struct {
	dbPath string
	f      *os.File
}

// write records m, durably, in slot m.TXID%2.
func (w *markFile) write(m mark) error {
	path := markPath(w.dbPath)
	if w.f == nil {
		_, statErr := os.Stat(path)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("record txid %d: %w", m.TXID, err)
		}
		w.f = f
		if errors.Is(statErr, os.ErrNotExist) {
			// A new name must reach the disk too, or a power loss could
			// take the file away with the marks written into it.
			if err := durable.SyncDir(filepath.Dir(path)); err != nil {
				return err
			}
		}
	}
	if _, err := w.f.WriteAt(m.encode(), int64(m.TXID%2)*markSlotSize); err != nil {
		return fmt.Errorf("record txid %d in %s: %w", m.TXID, path, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("record txid %d in %s: %w", m.TXID, path, err)
	}
	return nil
}

// remove deletes the mark file, durably.
func (w *markFile) remove() error {
	w.close()
	err := os.Remove(markPath(w.dbPath))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", markPath(w.dbPath), err)
	}
	return durable.SyncDir(filepath.Dir(w.dbPath))
}

func (w *markFile) close() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}
