package snapshot

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
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

const (
	// SchemeSHA256 addresses a chunk by the SHA-256 of its plaintext.
	SchemeSHA256 Scheme = 1
	// SchemeHMAC addresses a chunk by the HMAC-SHA256 of its plaintext
	// under a secret key, so that an address reveals nothing of the
	// content: with plain SHA-256, anyone holding a guessed page could
	// confirm it is in the bucket.
	SchemeHMAC Scheme = 2
)

// Addresser computes chunk addresses. Implementations must be safe for
// concurrent use.
type Addresser interface {
	Scheme() Scheme
	// KeyTag names the key of a keyed scheme; 0 for SchemeSHA256. A
	// manifest records it, so that chunks are checked with the key that
	// named them and a snapshot never reuses addresses made with another.
	KeyTag() uint32
	Address(chunk []byte) Address
}

// Keys finds the addressers of a keyed scheme. An encrypted replica's
// keyring implements it; nil stands for a replica without keys.
type Keys interface {
	// KeyAddresser returns the addresser of the key tag names, or an error
	// that says the key was not given.
	KeyAddresser(tag uint32) (Addresser, error)
	// Addressers returns one addresser per key, for a chunk checked
	// without its manifest.
	Addressers() []Addresser
}

// HMAC is the Addresser of SchemeHMAC under one key.
type HMAC struct {
	key [32]byte
	tag uint32
}

// NewHMAC returns the addresser of key, whose manifests record tag.
func NewHMAC(key [32]byte, tag uint32) *HMAC { return &HMAC{key: key, tag: tag} }

// Scheme implements Addresser.
func (*HMAC) Scheme() Scheme { return SchemeHMAC }

// KeyTag implements Addresser.
func (h *HMAC) KeyTag() uint32 { return h.tag }

// Address implements Addresser.
func (h *HMAC) Address(chunk []byte) Address {
	m := hmac.New(sha256.New, h.key[:])
	m.Write(chunk)
	return Address(m.Sum(nil))
}

// SHA256 is the Addresser of SchemeSHA256.
type SHA256 struct{}

// Scheme implements Addresser.
func (SHA256) Scheme() Scheme { return SchemeSHA256 }

// KeyTag implements Addresser.
func (SHA256) KeyTag() uint32 { return 0 }

// Address implements Addresser.
func (SHA256) Address(chunk []byte) Address { return sha256.Sum256(chunk) }

// knownScheme reports whether this build reads scheme s.
func knownScheme(s Scheme) error {
	if s == SchemeSHA256 || s == SchemeHMAC {
		return nil
	}
	return fmt.Errorf("%w: address scheme %d", ErrVersion, s)
}

// ErrNoKeys means a snapshot's chunks are named with a key and none was
// given: the replica is encrypted.
var ErrNoKeys = errors.New("the replica is encrypted and no key was given")

// addresserFor returns the Addresser that checks the chunks of m.
func addresserFor(m *Manifest, keys Keys) (Addresser, error) {
	switch m.Scheme {
	case SchemeSHA256:
		return SHA256{}, nil
	case SchemeHMAC:
		if keys == nil {
			return nil, fmt.Errorf("snapshot %s: %w", m.Key(), ErrNoKeys)
		}
		a, err := keys.KeyAddresser(m.AddressKey)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", m.Key(), err)
		}
		return a, nil
	}
	return nil, knownScheme(m.Scheme)
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
