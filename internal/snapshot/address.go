package snapshot

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/ferrydb/ferry/internal/layout"
)

// ChunkSize is the length of every chunk but a database's last.
const ChunkSize = 64 << 10

// Address names a chunk by its content.
type Address [32]byte

// String returns the address as 64 lower-case hex digits.
func (a Address) String() string { return hex.EncodeToString(a[:]) }

// ParseAddress parses 64 lower-case hex digits.
func ParseAddress(s string) (Address, error) {
	var a Address
	if len(s) != 2*len(a) {
		return a, fmt.Errorf("chunk address %q is not %d hex digits", s, 2*len(a))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return a, fmt.Errorf("chunk address %q is not lower-case hex", s)
		}
	}
	_, err := hex.Decode(a[:], []byte(s))
	return a, err
}

// ChunkKey returns the object key of the chunk with address a:
// layout.ChunkKey.
func ChunkKey(a Address) string { return layout.ChunkKey(a) }

// Scheme identifies how addresses are computed; a manifest records it so
// that a restore checks chunks the way they were named.
type Scheme uint8

// SchemeSHA256 addresses a chunk by the SHA-256 of its plaintext.
const SchemeSHA256 Scheme = 1

// Addresser computes chunk addresses. Implementations must be safe for
// concurrent use. A keyed one (HMAC) will let an encrypted replica name
// chunks without revealing their content.
type Addresser interface {
	Scheme() Scheme
	Address(chunk []byte) Address
}

// SHA256 is the Addresser of SchemeSHA256.
type SHA256 struct{}

// Scheme implements Addresser.
func (SHA256) Scheme() Scheme { return SchemeSHA256 }

// Address implements Addresser.
func (SHA256) Address(chunk []byte) Address { return sha256.Sum256(chunk) }

// addresserFor returns the Addresser that checks chunks of scheme s.
func addresserFor(s Scheme) (Addresser, error) {
	if s == SchemeSHA256 {
		return SHA256{}, nil
	}
	return nil, fmt.Errorf("%w: address scheme %d", ErrVersion, s)
}

// ChunkCount returns how many chunks a database of size bytes has.
func ChunkCount(size int64) int { return int((size + ChunkSize - 1) / ChunkSize) }

// chunkLen returns the length of chunk i of a database of size bytes.
func chunkLen(size int64, i int) int {
	return int(min(ChunkSize, size-int64(i)*ChunkSize))
}

// DBHash returns the database hash of an image with the given page size,
// page count and chunk addresses (see the package documentation).
func DBHash(pageSize int, pageCount uint32, chunks []Address) [32]byte {
	h := sha256.New()
	var b [20]byte
	copy(b[:12], "ferry-db-v1\x00")
	binary.LittleEndian.PutUint32(b[12:], uint32(pageSize))
	binary.LittleEndian.PutUint32(b[16:], pageCount)
	h.Write(b[:])
	for i := range chunks {
		h.Write(chunks[i][:])
	}
	return [32]byte(h.Sum(nil))
}

// HashDB reads a whole database image and returns its chunk addresses and
// database hash, as a full snapshot of it would record them.
func HashDB(src io.ReaderAt, pageSize int, pageCount uint32, a Addresser) ([]Address, [32]byte, error) {
	size := int64(pageSize) * int64(pageCount)
	chunks := make([]Address, ChunkCount(size))
	buf := make([]byte, ChunkSize)
	for i := range chunks {
		b := buf[:chunkLen(size, i)]
		if err := readChunk(src, b, int64(i)*ChunkSize); err != nil {
			return nil, [32]byte{}, err
		}
		chunks[i] = a.Address(b)
	}
	return chunks, DBHash(pageSize, pageCount, chunks), nil
}

// readChunk fills b from src at off. A database shorter than its page
// count says is an error: the snapshot would otherwise pad it silently.
func readChunk(src io.ReaderAt, b []byte, off int64) error {
	n, err := src.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		return fmt.Errorf("read database at offset %d: %d of %d bytes: the file is shorter than its page count says", off, n, len(b))
	}
	return fmt.Errorf("read database at offset %d: %w", off, err)
}
