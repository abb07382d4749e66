package wal

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// Vectors worked out by hand from the format description: each 8-byte word
// is two integers x0, x1; s1 += x0 + s2; s2 += x1 + s1.
func TestChecksumVectors(t *testing.T) {
	words := []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0}
	ones := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	tests := []struct {
		name      string
		bigEndian bool
		seed      [2]uint32
		in        []byte
		want      [2]uint32
	}{
		// Little-endian words 1, 2, 3, 4: (1, 3) after the first word,
		// (1+3+3, 3+4+7) after the second.
		{"little", false, [2]uint32{}, words, [2]uint32{7, 14}},
		// Big-endian, the same bytes are 1<<24 ... 4<<24: everything
		// scales by 1<<24.
		{"big", true, [2]uint32{}, words, [2]uint32{7 << 24, 14 << 24}},
		// Seeded with (5, 9): (5+1+9, 9+2+15) = (15, 26), then
		// (15+3+26, 26+4+44) = (44, 74).
		{"seeded", false, [2]uint32{5, 9}, words, [2]uint32{44, 74}},
		// 0xffffffff + 0xffffffff wraps to 0xfffffffe.
		{"wraps", false, [2]uint32{}, ones, [2]uint32{0xffffffff, 0xfffffffe}},
		{"empty", true, [2]uint32{3, 4}, nil, [2]uint32{3, 4}},
		// A trailing partial word is ignored.
		{"partial word", false, [2]uint32{}, append(words[:8:8], 9, 9, 9, 9), [2]uint32{1, 3}},
	}
	for _, tt := range tests {
		s1, s2 := checksum(tt.bigEndian, tt.seed[0], tt.seed[1], tt.in)
		if got := [2]uint32{s1, s2}; got != tt.want {
			t.Errorf("%s: got %#x, want %#x", tt.name, got, tt.want)
		}
		if got := naiveSum(tt.bigEndian, tt.seed, tt.in); got != tt.want {
			t.Errorf("%s: naiveSum got %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

// toBigEndian rewrites a little-endian log with big-endian checksums, as a
// big-endian machine would have written it. Frames past the valid prefix
// are left as they are.
func toBigEndian(t *testing.T, log []byte) []byte {
	t.Helper()
	hdr, err := parseHeader(log)
	if err != nil || hdr.BigEndian {
		t.Fatalf("not a little-endian log: %v", err)
	}
	out := append([]byte(nil), log...)
	be := hdr
	be.BigEndian = true
	enc := be.encode()
	copy(out, enc[:])
	le := [2]uint32{hdr.Sum1, hdr.Sum2}
	bs := [2]uint32{binary.BigEndian.Uint32(enc[24:]), binary.BigEndian.Uint32(enc[28:])}
	frameSize := FrameHeaderSize + hdr.PageSize
	for off := HeaderSize; off+frameSize <= len(log); off += frameSize {
		f := log[off : off+frameSize]
		var ff frameFields
		ff.decode(f)
		if ff.pgno == 0 || ff.salt1 != hdr.Salt1 || ff.salt2 != hdr.Salt2 {
			break
		}
		le = naiveSum(false, naiveSum(false, le, f[:8]), f[FrameHeaderSize:])
		if le != [2]uint32{ff.sum1, ff.sum2} {
			break
		}
		bs = naiveSum(true, naiveSum(true, bs, f[:8]), f[FrameHeaderSize:])
		binary.BigEndian.PutUint32(out[off+16:], bs[0])
		binary.BigEndian.PutUint32(out[off+20:], bs[1])
	}
	return out
}

// SQLite reads a log in either byte order on any machine. A log rewritten
// big-endian must read as the same transactions here, and sqlite3 must
// recover the same database from it: that proves both orders of checksum
// agree with SQLite's.
func TestBigEndianLog(t *testing.T) {
	ru := runWorkload(t, 1024, 8)
	log, err := os.ReadFile(ru.l.walPath())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "db")
	if err := os.WriteFile(path, ru.l.base, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-wal", toBigEndian(t, log), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr, err := ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	if !hdr.BigEndian {
		t.Fatal("header does not say big-endian")
	}
	r := NewReader(f, hdr)
	txns := readAll(t, r)
	sameTxns(t, ru.r, ru.txns, r, txns)
	rebuilt := rebuild(t, dir, ru.l.base, r, 1024, txns)
	want := ru.hashes[len(ru.txns)]
	if got := contentHash(t, rebuilt); got != want {
		t.Fatalf("rebuilt from the big-endian log: %s, want %s", got, want)
	}
	if got := contentHash(t, path); got != want {
		t.Fatalf("sqlite3 recovering the big-endian log: %s, want %s", got, want)
	}
}
