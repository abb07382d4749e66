package snapshot

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/ferrydb/ferry/internal/layout"
)

// Version is the manifest format version this build writes: 2, whose
// chunks are stored in packs. It reads version 1 too, whose chunks are
// each an object of its own.
const Version = 2

// MaxManifestSize bounds the manifest a reader accepts, and so the
// database a snapshot can hold (about 128 GiB): a hostile or damaged store
// must not be able to make a restore allocate without limit.
const MaxManifestSize = 64 << 20

const (
	manifestHeaderSize = 96
	manifestSumSize    = 32
	encodingZstd       = 1
	minPageSize        = 512
	maxPageSize        = 65536
	locSize            = 12
	// maxChunks bounds the chunks of a manifest of version 1; a version 2
	// entry is longer (a location too, and perhaps a pack), so MarshalBinary
	// checks its size.
	maxChunks = (MaxManifestSize - manifestHeaderSize - manifestSumSize) / len(Address{})
)

var (
	manifestMagic = [8]byte{'F', 'E', 'R', 'R', 'Y', 'S', 'N', 'P'}
	castagnoli    = crc32.MakeTable(crc32.Castagnoli)
)

// Manifest describes one snapshot: the database image at TXID.
type Manifest struct {
	TXID      uint64
	Time      time.Time // commit time of TXID, UTC
	PageSize  int
	PageCount uint32
	Scheme    Scheme
	// AddressKey is the KeyTag of the addresser that named the chunks: 0
	// for SchemeSHA256.
	AddressKey uint32
	Chunks     []Address // in image order
	DBHash     [32]byte
	// Packs names the packs that hold the chunks, and Locs says where
	// each chunk is, in image order. Locs is nil for a version 1
	// manifest, whose chunks are all loose.
	Packs []Pack
	Locs  []Loc
}

// PackID names a pack (layout.PackKey).
type PackID [16]byte

// Pack is a pack as a manifest names it: its id and its length in bytes,
// every chunk in it, whether this manifest names it or not.
type Pack struct {
	ID   PackID
	Size uint32
}

// packEntrySize is the length of a pack's entry in a manifest.
const packEntrySize = 16 + 4

// Loose is the Pack of a Loc whose chunk is an object of its own, under
// its ChunkKey, as every chunk of a version 1 manifest is.
const Loose = ^uint32(0)

// Loc is where a chunk is stored: Length bytes at Offset in the pack
// Manifest.Packs[Pack], or loose.
type Loc struct {
	Pack   uint32
	Offset uint32
	Length uint32
}

// Loc returns where chunk i is stored.
func (m *Manifest) Loc(i int) Loc {
	if m.Locs == nil {
		return Loc{Pack: Loose}
	}
	return m.Locs[i]
}

// PackKey returns the object key of pack p of m.
func (m *Manifest) PackKey(p uint32) string { return layout.PackKey(m.Packs[p].ID) }

// Size returns the database image's length in bytes.
func (m *Manifest) Size() int64 { return int64(m.PageSize) * int64(m.PageCount) }

// ChunkLen returns the length of chunk i.
func (m *Manifest) ChunkLen(i int) int { return chunkLen(m.Size(), i) }

// Key returns the manifest's object key.
func (m *Manifest) Key() string { return ManifestKey(m.TXID) }

// ManifestKey returns the object key of the manifest of the snapshot at
// txid: layout.ManifestKey, here because the format and its key go
// together.
func ManifestKey(txid uint64) string { return layout.ManifestKey(txid) }

// validShape checks what a manifest header alone says.
func validShape(pageSize int, pageCount uint32, txid uint64, nanos int64) error {
	switch {
	case pageSize < minPageSize || pageSize > maxPageSize || pageSize&(pageSize-1) != 0:
		return fmt.Errorf("page size %d is not a power of two from %d to %d", pageSize, minPageSize, maxPageSize)
	case pageCount == 0:
		return errors.New("page count is 0")
	case ChunkCount(int64(pageSize)*int64(pageCount)) > maxChunks:
		return fmt.Errorf("%d pages of %d bytes need more chunks than a manifest may name (%d)", pageCount, pageSize, maxChunks)
	case txid == 0:
		return errors.New("txid is 0")
	case nanos < 0:
		return fmt.Errorf("time %d is before 1970", nanos)
	}
	return nil
}

// Validate reports whether m is a manifest that could be written and
// restored.
func (m *Manifest) Validate() error {
	if m.Time.Before(time.Unix(0, 0)) || m.Time.After(time.Unix(0, 1<<63-1)) {
		return fmt.Errorf("time %s cannot be stored", m.Time)
	}
	if err := validShape(m.PageSize, m.PageCount, m.TXID, m.Time.UnixNano()); err != nil {
		return err
	}
	if err := knownScheme(m.Scheme); err != nil {
		return err
	}
	if (m.Scheme == SchemeSHA256) != (m.AddressKey == 0) {
		return fmt.Errorf("address key %08x does not go with address scheme %d", m.AddressKey, m.Scheme)
	}
	if want := ChunkCount(m.Size()); len(m.Chunks) != want {
		return fmt.Errorf("%d chunk addresses for %d chunks", len(m.Chunks), want)
	}
	if DBHash(m.PageSize, m.PageCount, m.Chunks) != m.DBHash {
		return errors.New("database hash does not match the chunk addresses")
	}
	return m.validLocs()
}

// validLocs checks the packs and locations of a version 2 manifest: one
// location per chunk, each loose or inside a pack the manifest names,
// with a length a stored chunk can have, and every pack named once and
// used.
func (m *Manifest) validLocs() error {
	if m.Locs == nil {
		if len(m.Packs) > 0 {
			return fmt.Errorf("%d packs and no chunk locations", len(m.Packs))
		}
		return nil
	}
	if len(m.Locs) != len(m.Chunks) {
		return fmt.Errorf("%d chunk locations for %d chunks", len(m.Locs), len(m.Chunks))
	}
	used := make([]bool, len(m.Packs))
	seen := make(map[PackID]bool, len(m.Packs))
	for _, p := range m.Packs {
		if seen[p.ID] {
			return fmt.Errorf("pack %x is named twice", p.ID)
		}
		seen[p.ID] = true
	}
	for i, l := range m.Locs {
		switch {
		case l.Pack == Loose:
			if l.Offset != 0 || l.Length != 0 {
				return fmt.Errorf("chunk %d is loose but has offset %d and length %d", i, l.Offset, l.Length)
			}
		case int64(l.Pack) >= int64(len(m.Packs)):
			return fmt.Errorf("chunk %d is in pack %d of %d", i, l.Pack, len(m.Packs))
		case l.Length == 0 || l.Length > maxStoredChunk:
			return fmt.Errorf("chunk %d is stored in %d bytes, not 1 to %d", i, l.Length, maxStoredChunk)
		case uint64(l.Offset)+uint64(l.Length) > uint64(m.Packs[l.Pack].Size):
			return fmt.Errorf("chunk %d ends at %d, past the end of its %d-byte pack", i, uint64(l.Offset)+uint64(l.Length), m.Packs[l.Pack].Size)
		default:
			used[l.Pack] = true
		}
	}
	for p, u := range used {
		if !u {
			return fmt.Errorf("pack %x holds none of the chunks", m.Packs[p].ID)
		}
	}
	return nil
}

// MarshalBinary encodes m in the manifest format.
func (m *Manifest) MarshalBinary() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode manifest %s: %w", m.Key(), err)
	}
	version := uint16(1)
	size := manifestHeaderSize + len(m.Chunks)*len(Address{}) + manifestSumSize
	if m.Locs != nil {
		version = 2
		size += len(m.Packs)*packEntrySize + len(m.Locs)*locSize
	}
	if size > MaxManifestSize {
		return nil, fmt.Errorf("encode manifest %s: %d bytes, more than the %d a manifest may have", m.Key(), size, MaxManifestSize)
	}
	b := make([]byte, manifestHeaderSize, size)
	le := binary.LittleEndian
	copy(b[0:8], manifestMagic[:])
	le.PutUint16(b[8:], version)
	b[10] = byte(m.Scheme)
	b[11] = encodingZstd
	le.PutUint32(b[12:], uint32(m.PageSize))
	le.PutUint32(b[16:], m.PageCount)
	le.PutUint32(b[20:], ChunkSize)
	le.PutUint32(b[24:], uint32(len(m.Chunks)))
	le.PutUint32(b[28:], m.AddressKey)
	le.PutUint64(b[32:], m.TXID)
	le.PutUint64(b[40:], uint64(m.Time.UnixNano()))
	le.PutUint64(b[48:], uint64(m.Size()))
	copy(b[56:88], m.DBHash[:])
	le.PutUint32(b[88:], crc32.Checksum(b[:88], castagnoli))
	le.PutUint32(b[92:], uint32(len(m.Packs)))
	for i := range m.Chunks {
		b = append(b, m.Chunks[i][:]...)
	}
	if version == 2 {
		for _, p := range m.Packs {
			b = append(b, p.ID[:]...)
			b = le.AppendUint32(b, p.Size)
		}
		for _, l := range m.Locs {
			b = le.AppendUint32(b, l.Pack)
			b = le.AppendUint32(b, l.Offset)
			b = le.AppendUint32(b, l.Length)
		}
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...), nil
}

// ParseManifest decodes and checks a manifest. It accepts exactly what
// MarshalBinary produces.
func ParseManifest(data []byte) (Manifest, error) { return parseManifest(data, "") }

func parseManifest(data []byte, key string) (Manifest, error) {
	m, n, err := parseManifestHeader(data, key)
	if err != nil {
		return Manifest{}, err
	}
	corrupt := func(format string, args ...any) error {
		return &ManifestError{Key: key, Reason: fmt.Sprintf(format, args...)}
	}
	le := binary.LittleEndian
	version, packs := le.Uint16(data[8:]), int(le.Uint32(data[92:]))
	want := manifestHeaderSize + n*len(Address{}) + manifestSumSize
	if version == 2 {
		want += packs*packEntrySize + n*locSize
	}
	if len(data) != want {
		return Manifest{}, corrupt("%d bytes, %d chunks and %d packs make it %d", len(data), n, packs, want)
	}
	body := data[:len(data)-manifestSumSize]
	if sha256.Sum256(body) != [32]byte(data[len(body):]) {
		return Manifest{}, corrupt("checksum does not match its content")
	}
	rest := body[manifestHeaderSize:]
	m.Chunks = make([]Address, n)
	for i := range m.Chunks {
		m.Chunks[i] = Address(rest)
		rest = rest[len(Address{}):]
	}
	if DBHash(m.PageSize, m.PageCount, m.Chunks) != m.DBHash {
		return Manifest{}, corrupt("database hash does not match the chunk addresses")
	}
	if version == 1 {
		return m, nil
	}
	m.Packs = make([]Pack, packs)
	for i := range m.Packs {
		m.Packs[i] = Pack{ID: PackID(rest), Size: le.Uint32(rest[16:])}
		rest = rest[packEntrySize:]
	}
	m.Locs = make([]Loc, n)
	for i := range m.Locs {
		m.Locs[i] = Loc{Pack: le.Uint32(rest), Offset: le.Uint32(rest[4:]), Length: le.Uint32(rest[8:])}
		rest = rest[locSize:]
	}
	if err := m.validLocs(); err != nil {
		return Manifest{}, corrupt("%v", err)
	}
	return m, nil
}

// parseManifestHeader checks a manifest's first 96 bytes and returns what
// they say, with no chunks, and the chunk count. Magic and version come
// before the checksum: a later version may lay the rest out differently.
func parseManifestHeader(data []byte, key string) (Manifest, int, error) {
	corrupt := func(format string, args ...any) error {
		return &ManifestError{Key: key, Reason: fmt.Sprintf(format, args...)}
	}
	if len(data) < manifestHeaderSize {
		return Manifest{}, 0, corrupt("truncated: %d bytes, shorter than the %d-byte header", len(data), manifestHeaderSize)
	}
	le := binary.LittleEndian
	if [8]byte(data[0:8]) != manifestMagic {
		return Manifest{}, 0, corrupt("not a ferry manifest: magic %q", data[0:8])
	}
	version := le.Uint16(data[8:])
	if version != 1 && version != 2 {
		return Manifest{}, 0, fmt.Errorf("snapshot manifest %s: %w version %d (this ferry reads versions 1 and 2; a newer ferry wrote it, or it is damaged)",
			key, ErrVersion, version)
	}
	if got, want := crc32.Checksum(data[:88], castagnoli), le.Uint32(data[88:]); got != want {
		return Manifest{}, 0, corrupt("header checksum %08x, header says %08x", got, want)
	}
	if err := knownScheme(Scheme(data[10])); err != nil {
		return Manifest{}, 0, fmt.Errorf("snapshot manifest %s: %w", key, err)
	}
	if data[11] != encodingZstd {
		return Manifest{}, 0, fmt.Errorf("snapshot manifest %s: %w: chunk encoding %d", key, ErrVersion, data[11])
	}
	m := Manifest{
		Scheme:     Scheme(data[10]),
		AddressKey: le.Uint32(data[28:]),
		PageSize:   int(le.Uint32(data[12:])),
		PageCount:  le.Uint32(data[16:]),
		TXID:       le.Uint64(data[32:]),
		DBHash:     [32]byte(data[56:88]),
	}
	nanos := int64(le.Uint64(data[40:]))
	if err := validShape(m.PageSize, m.PageCount, m.TXID, nanos); err != nil {
		return Manifest{}, 0, corrupt("%v", err)
	}
	m.Time = time.Unix(0, nanos).UTC()
	n := int(le.Uint32(data[24:]))
	switch {
	case le.Uint32(data[20:]) != ChunkSize:
		return Manifest{}, 0, corrupt("chunk size %d, not %d", le.Uint32(data[20:]), ChunkSize)
	case n != ChunkCount(m.Size()):
		return Manifest{}, 0, corrupt("%d chunks for %d bytes of database", n, m.Size())
	case le.Uint64(data[48:]) != uint64(m.Size()):
		return Manifest{}, 0, corrupt("database size %d bytes, %d pages of %d make %d", le.Uint64(data[48:]), m.PageCount, m.PageSize, m.Size())
	case version == 1 && le.Uint32(data[92:]) != 0:
		return Manifest{}, 0, corrupt("reserved header field is not 0")
	case version == 2 && le.Uint32(data[92:]) > uint32(n):
		return Manifest{}, 0, corrupt("%d packs for %d chunks", le.Uint32(data[92:]), n)
	case (m.Scheme == SchemeSHA256) != (m.AddressKey == 0):
		return Manifest{}, 0, corrupt("address key %08x does not go with address scheme %d", m.AddressKey, m.Scheme)
	}
	return m, n, nil
}
