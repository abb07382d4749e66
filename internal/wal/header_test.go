package wal

import (
	"encoding/binary"
	"errors"
	"testing"
)

// rawHeader encodes a header field by field, with a correct checksum, so
// that tests can make headers this package would never write.
func rawHeader(magic, version, pageSize uint32) []byte {
	b := make([]byte, HeaderSize)
	be := binary.BigEndian
	be.PutUint32(b[0:], magic)
	be.PutUint32(b[4:], version)
	be.PutUint32(b[8:], pageSize)
	be.PutUint32(b[12:], 3)
	be.PutUint32(b[16:], 0xdeadbeef)
	be.PutUint32(b[20:], 0x12345678)
	s := naiveSum(magic&1 == 1, [2]uint32{}, b[:24])
	be.PutUint32(b[24:], s[0])
	be.PutUint32(b[28:], s[1])
	return b
}

func TestReadHeader(t *testing.T) {
	badSum := rawHeader(magicLittle, Version, 4096)
	badSum[31] ^= 1
	tests := []struct {
		name string
		b    []byte
		want error // nil: valid
	}{
		{"little-endian", rawHeader(magicLittle, Version, 4096), nil},
		{"big-endian", rawHeader(magicBig, Version, 4096), nil},
		{"512", rawHeader(magicLittle, Version, 512), nil},
		{"65536", rawHeader(magicLittle, Version, 65536), nil},
		{"with frames after it", append(rawHeader(magicLittle, Version, 1024), make([]byte, 1048)...), nil},
		{"empty", nil, ErrNoHeader},
		{"31 bytes", rawHeader(magicLittle, Version, 4096)[:31], ErrNoHeader},
		{"zeros", make([]byte, 32), ErrBadHeader},
		{"bad magic", rawHeader(0x377f0684, Version, 4096), ErrBadHeader},
		{"database header", []byte("SQLite format 3\x00\x10\x00\x02\x02\x00@  \x00\x00\x00\x01\x00\x00\x00\x02"), ErrBadHeader},
		{"other version", rawHeader(magicLittle, Version+1, 4096), ErrBadHeader},
		{"page size 1", rawHeader(magicLittle, Version, 1), ErrBadHeader},
		{"page size 0", rawHeader(magicLittle, Version, 0), ErrBadHeader},
		{"page size 256", rawHeader(magicLittle, Version, 256), ErrBadHeader},
		{"page size 513", rawHeader(magicLittle, Version, 513), ErrBadHeader},
		{"page size 3072", rawHeader(magicLittle, Version, 3072), ErrBadHeader},
		{"page size 131072", rawHeader(magicLittle, Version, 131072), ErrBadHeader},
		{"bad checksum", badSum, ErrBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ReadHeader(&memFile{b: tt.b})
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			be := binary.BigEndian
			if h.BigEndian != (be.Uint32(tt.b) == magicBig) || h.PageSize != int(be.Uint32(tt.b[8:])) ||
				h.Seq != 3 || h.Salt1 != 0xdeadbeef || h.Salt2 != 0x12345678 ||
				h.Sum1 != be.Uint32(tt.b[24:]) || h.Sum2 != be.Uint32(tt.b[28:]) {
				t.Fatalf("decoded %+v", h)
			}
			if enc := h.encode(); string(enc[:]) != string(tt.b[:HeaderSize]) {
				t.Fatal("encode does not give back the header")
			}
			if s := h.Start(); s.Offset != HeaderSize || s.Frames() != 0 || !s.valid() {
				t.Fatalf("start %v", s)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

func TestReadHeaderIOError(t *testing.T) {
	_, err := ReadHeader(failingReader{})
	if err == nil || errors.Is(err, ErrNoHeader) || errors.Is(err, ErrBadHeader) {
		t.Fatalf("got %v, want the I/O error", err)
	}
	if _, err := Resume(failingReader{}, testHeader.encodeParsed(t).Start()); err == nil || errors.Is(err, ErrContinuity) {
		t.Fatalf("Resume: got %v, want the I/O error, not a break", err)
	}
}
