package segment

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from today's writer")

// goldenSegment is the version 1 segment that the writer of this format
// produced. Buckets keep segments for as long as users keep replicas, so
// the reader must go on reading this file, and the writer must go on
// producing it, until a new format version is introduced on purpose.
var goldenSegment = filepath.Join("testdata", "v1.seg")

// goldenInput is the input of the golden segment: three transactions, one
// of them without pages, and a commit time with nanoseconds so that the
// time field's precision is pinned too.
func goldenInput() (Header, []txnModel) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC)
	return Header{PageSize: 512, First: 41, Last: 43}, []txnModel{
		{TXID: 41, Time: t0, DBSize: 3, Pages: []Page{{1, goldenPage(1, 41)}, {3, goldenPage(3, 41)}}},
		{TXID: 42, Time: t0.Add(1500 * time.Microsecond), DBSize: 3},
		{TXID: 43, Time: t0.Add(2 * time.Second), DBSize: 5, Pages: []Page{{2, goldenPage(2, 43)}, {5, goldenPage(5, 43)}}},
	}
}

// goldenPage returns a 512-byte page image that differs per page and per
// transaction, with both a repeated run and a varied run, so that the
// compressed body is neither trivial nor large.
func goldenPage(pgno uint32, txid uint64) []byte {
	b := make([]byte, 512)
	copy(b, "ferry golden page")
	binary.LittleEndian.PutUint32(b[20:], pgno)
	binary.LittleEndian.PutUint64(b[24:], txid)
	for i := 32; i < 256; i++ {
		b[i] = byte(pgno)
	}
	for i := 256; i < len(b); i++ {
		b[i] = byte(uint64(i)*uint64(pgno)*31 + txid)
	}
	return b
}

// TestGoldenWrite writes the golden input with today's writer and requires
// the very bytes of the golden file. The writer is deterministic: one
// encoder goroutine, fixed level and window, no timestamps of its own.
func TestGoldenWrite(t *testing.T) {
	h, txns := goldenInput()
	got := encode(t, h, txns)
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenSegment), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenSegment, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", goldenSegment, len(got))
		return
	}
	want, err := os.ReadFile(goldenSegment)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	// Tell a format change from a compressor change: the zstd stream may
	// change with a new klauspost/compress while every decoded byte, and
	// so the format, stays the same.
	gd, gerr := decodedForm(got)
	wd, werr := decodedForm(want)
	if gerr == nil && werr == nil && bytes.Equal(gd, wd) {
		t.Fatalf("the writer's compressed body differs from %s, but its decoded bytes do not: "+
			"the zstd encoder's output changed, not the format. Keep the old file as a reader-only golden file "+
			"(TestGoldenRead must still pass on it) before regenerating with -update", goldenSegment)
	}
	t.Fatalf("the writer's output differs from %s at byte %d (%d bytes, golden file %d): "+
		"the segment format changed; a changed format needs a new version number, and the old version must stay readable",
		goldenSegment, firstDiff(got, want), len(got), len(want))
}

// TestGoldenRead reads the golden segment with today's reader and checks
// every field against values written out here, not derived from the
// writer, so that a change to writer and reader together still fails.
func TestGoldenRead(t *testing.T) {
	data, err := os.ReadFile(goldenSegment)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if len(data) != 1274 {
		t.Errorf("golden segment is %d bytes, want 1274", len(data))
	}
	// The header and the trailer's counts are not compressed: they are
	// pinned byte for byte, as the package documentation lays them out.
	wantHead := "4645525259534547" + // magic FERRYSEG
		"0100" + "0100" + // version 1, flags: zstd
		"00020000" + // page size 512
		"2900000000000000" + "2b00000000000000" + // txids 41..43
		"00000000" + "249bf05a" // reserved, CRC32C
	if got := hex.EncodeToString(data[:headerSize]); got != wantHead {
		t.Errorf("header bytes %s, want %s", got, wantHead)
	}
	wantTrailer := "4645525259454e44" + // magic FERRYEND
		"0300000000000000" + "0400000000000000" + // 3 transactions, 4 pages
		"c208000000000000" // decoded body: 3×21 + 4×(5+512) + 3×(5+32) bytes
	if got := hex.EncodeToString(data[len(data)-trailerSize:][:32]); got != wantTrailer {
		t.Errorf("trailer bytes 0..32 %s, want %s", got, wantTrailer)
	}
	hdr, txns, info, err := decode(data)
	if err != nil {
		t.Fatalf("decode golden segment: %v", err)
	}
	if want := (Header{PageSize: 512, First: 41, Last: 43}); hdr != want {
		t.Errorf("header = %+v, want %+v", hdr, want)
	}
	type wantTxn struct {
		txid   uint64
		time   time.Time
		dbSize uint32
		pages  []uint32
	}
	want := []wantTxn{
		{41, time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC), 3, []uint32{1, 3}},
		{42, time.Date(2025, 3, 1, 12, 0, 0, 1_500_123, time.UTC), 3, nil},
		{43, time.Date(2025, 3, 1, 12, 0, 2, 123, time.UTC), 5, []uint32{2, 5}},
	}
	if len(txns) != len(want) {
		t.Fatalf("%d transactions, want %d", len(txns), len(want))
	}
	for i, w := range want {
		got := txns[i]
		if got.TXID != w.txid || !got.Time.Equal(w.time) || got.Time.Location() != time.UTC || got.DBSize != w.dbSize {
			t.Errorf("txn %d = {txid %d, time %s, db size %d}, want {txid %d, time %s, db size %d}",
				i, got.TXID, got.Time, got.DBSize, w.txid, w.time, w.dbSize)
		}
		if len(got.Pages) != len(w.pages) {
			t.Errorf("txid %d: %d pages, want %d", w.txid, len(got.Pages), len(w.pages))
			continue
		}
		for j, pgno := range w.pages {
			if got.Pages[j].Pgno != pgno {
				t.Errorf("txid %d: page %d is page number %d, want %d", w.txid, j, got.Pages[j].Pgno, pgno)
			}
			if !bytes.Equal(got.Pages[j].Data, goldenPage(pgno, w.txid)) {
				t.Errorf("txid %d: page %d's bytes differ from what was written", w.txid, pgno)
			}
		}
	}
	wantInfo := Info{
		Header:    Header{PageSize: 512, First: 41, Last: 43},
		Txns:      3,
		Pages:     4,
		FirstTime: time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC),
		LastTime:  time.Date(2025, 3, 1, 12, 0, 2, 123, time.UTC),
		DBSize:    5,
		Size:      1274,
		SHA256:    mustHex32(t, "8e8fc0ad88bb8a943931529aac05ffea0641bac897f54a114e0f2412fd81d50e"),
	}
	if info != wantInfo {
		t.Errorf("info =\n%+v\nwant\n%+v", info, wantInfo)
	}
	if vi, err := Verify(bytes.NewReader(data), Options{Key: Key(41, 43)}); err != nil || vi != wantInfo {
		t.Errorf("Verify = %+v, %v; want %+v", vi, err, wantInfo)
	}
}

// decodedForm returns a segment's bytes with the compressed body replaced
// by its decoded bytes and without the trailer fields that describe the
// compressed bytes (their length, CRC and the checksum over them).
func decodedForm(seg []byte) ([]byte, error) {
	if len(seg) < headerSize+trailerSize {
		return nil, io.ErrUnexpectedEOF
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	body, err := dec.DecodeAll(seg[headerSize:len(seg)-trailerSize], nil)
	if err != nil {
		return nil, err
	}
	tr := seg[len(seg)-trailerSize:]
	out := append(bytes.Clone(seg[:headerSize]), body...)
	return append(out, tr[:32]...), nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func mustHex32(t *testing.T, s string) [32]byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		t.Fatalf("bad hex literal %q", s)
	}
	return [32]byte(b)
}
