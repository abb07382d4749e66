package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// rawTxn is a transaction written with the Writer's checks off.
type rawTxn struct {
	txid   uint64
	nanos  int64
	dbSize uint32
	pages  []uint32
	short  bool // write the pages one byte short
}

// encodeUnchecked writes a segment whose checksums are all correct but
// whose content may break the format's rules.
func encodeUnchecked(t *testing.T, h Header, txns []rawTxn) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	w.unchecked = true
	for _, txn := range txns {
		if err := w.Begin(txn.txid, time.Unix(0, txn.nanos), txn.dbSize); err != nil {
			t.Fatal(err)
		}
		for _, pgno := range txn.pages {
			size := h.PageSize
			if txn.short {
				size--
			}
			if err := w.Page(pgno, make([]byte, size)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReaderRejectsBrokenRules(t *testing.T) {
	h := Header{PageSize: 512, First: 5, Last: 6}
	for _, tc := range []struct {
		name string
		txns []rawTxn
		want string
	}{
		{"gap in txids", []rawTxn{{txid: 5, dbSize: 1}, {txid: 7, dbSize: 1}}, "txid 7 where txid 6 should follow"},
		{"repeated txid", []rawTxn{{txid: 5, dbSize: 1}, {txid: 5, dbSize: 1}}, "txid 5 where txid 6 should follow"},
		{"wrong first txid", []rawTxn{{txid: 4, dbSize: 1}, {txid: 5, dbSize: 1}}, "txid 4 where txid 5 should follow"},
		{"too few txns", []rawTxn{{txid: 5, dbSize: 1}}, "body ends after txid 5, header says the last is 6"},
		{"too many txns", []rawTxn{{txid: 5, dbSize: 1}, {txid: 6, dbSize: 1}, {txid: 7, dbSize: 1}}, "a transaction after txid 6"},
		{"page 0", []rawTxn{{txid: 5, dbSize: 3, pages: []uint32{0}}, {txid: 6, dbSize: 1}}, "page 0 outside"},
		{"page past db size", []rawTxn{{txid: 5, dbSize: 3, pages: []uint32{1, 4}}, {txid: 6, dbSize: 1}}, "page 4 outside the database's 3 pages"},
		{"pages descending", []rawTxn{{txid: 5, dbSize: 3, pages: []uint32{2, 1}}, {txid: 6, dbSize: 3}}, "page 1 after page 2"},
		{"page twice", []rawTxn{{txid: 5, dbSize: 3, pages: []uint32{2, 2}}, {txid: 6, dbSize: 3}}, "page 2 after page 2"},
		{"database size 0", []rawTxn{{txid: 5, dbSize: 0}, {txid: 6, dbSize: 1}}, "database size 0"},
		{"time before 1970", []rawTxn{{txid: 5, nanos: -1, dbSize: 1}, {txid: 6, dbSize: 1}}, "before 1970"},
		{"page shorter than page size", []rawTxn{{txid: 5, dbSize: 3, pages: []uint32{1}, short: true}, {txid: 6, dbSize: 1}}, "record tag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := encodeUnchecked(t, h, tc.txns)
			_, err := Verify(bytes.NewReader(data), Options{Key: "k"})
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, objstore.ErrCorrupt) {
				t.Fatalf("Verify = %v, want a *CorruptError", err)
			}
			if !strings.Contains(ce.Reason, tc.want) {
				t.Fatalf("reason %q, want it to mention %q", ce.Reason, tc.want)
			}
		})
	}
}

// rewriteHeader changes a valid segment's header and fixes its checksum,
// so that only the change itself is wrong.
func rewriteHeader(data []byte, change func(h []byte)) []byte {
	bad := bytes.Clone(data)
	change(bad[:headerSize])
	binary.LittleEndian.PutUint32(bad[36:], crc32.Checksum(bad[:36], castagnoli))
	return bad
}

func TestReaderRejectsHeaders(t *testing.T) {
	h, txns := sampleTxns(512)
	data := encode(t, h, txns)
	le := binary.LittleEndian
	for _, tc := range []struct {
		name    string
		change  func(h []byte)
		version bool
		want    string
	}{
		{"magic", func(h []byte) { copy(h, "SQLITE3\x00") }, false, "not a ferry segment"},
		{"version 2", func(h []byte) { le.PutUint16(h[8:], 2) }, true, "version 2 (this ferry reads version 1"},
		{"version 0", func(h []byte) { le.PutUint16(h[8:], 0) }, true, "version 0"},
		{"unknown flag", func(h []byte) { le.PutUint16(h[10:], 3) }, true, "flags 0x3"},
		{"no zstd flag", func(h []byte) { le.PutUint16(h[10:], 0) }, true, "flags 0x0"},
		{"page size 1000", func(h []byte) { le.PutUint32(h[12:], 1000) }, false, "page size 1000"},
		{"page size 256", func(h []byte) { le.PutUint32(h[12:], 256) }, false, "page size 256"},
		{"page size 128 KiB", func(h []byte) { le.PutUint32(h[12:], 128<<10) }, false, "page size 131072"},
		{"first txid 0", func(h []byte) { le.PutUint64(h[16:], 0) }, false, "first txid is 0"},
		{"reversed range", func(h []byte) { le.PutUint64(h[24:], 6) }, false, "last txid 6 is before first txid 7"},
		{"huge range", func(h []byte) { le.PutUint64(h[24:], 7+MaxTxns) }, false, "more than"},
		{"reserved", func(h []byte) { h[33] = 1 }, false, "reserved header field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(rewriteHeader(data, tc.change)), Options{Key: "k"})
			if tc.version != errors.Is(err, ErrVersion) || tc.version == errors.Is(err, objstore.ErrCorrupt) {
				t.Fatalf("Verify = %v; want version error: %v", err, tc.version)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestWriterRefusesMisuse(t *testing.T) {
	page := make([]byte, 512)
	t0 := time.Unix(1, 0)
	for _, tc := range []struct {
		name string
		do   func(w *Writer) error
		want string
	}{
		{"wrong first txid", func(w *Writer) error { return w.Begin(2, t0, 1) }, "expected txid 1"},
		{"txid past last", func(w *Writer) error {
			w.Begin(1, t0, 1)
			w.Commit()
			w.Begin(2, t0, 1)
			w.Commit()
			return w.Begin(3, t0, 1)
		}, "expected txid 3 of 1..2"},
		{"begin inside txn", func(w *Writer) error { w.Begin(1, t0, 1); return w.Begin(2, t0, 1) }, "not committed"},
		{"database size 0", func(w *Writer) error { return w.Begin(1, t0, 0) }, "database size is 0"},
		{"time before 1970", func(w *Writer) error { return w.Begin(1, time.Unix(-1, 0), 1) }, "cannot be stored"},
		{"page outside txn", func(w *Writer) error { return w.Page(1, page) }, "outside a transaction"},
		{"page 0", func(w *Writer) error { w.Begin(1, t0, 2); return w.Page(0, page) }, "page 0 outside"},
		{"page past size", func(w *Writer) error { w.Begin(1, t0, 2); return w.Page(3, page) }, "page 3 outside"},
		{"page again", func(w *Writer) error { w.Begin(1, t0, 2); w.Page(2, page); return w.Page(2, page) }, "page 2 after page 2"},
		{"short page", func(w *Writer) error { w.Begin(1, t0, 2); return w.Page(1, page[:100]) }, "is 100 bytes"},
		{"commit outside txn", func(w *Writer) error { return w.Commit() }, "commit outside"},
		{"close early", func(w *Writer) error { w.Begin(1, t0, 1); w.Commit(); return w.Close() }, "txids 1..1 committed, header says 1..2"},
		{"close in txn", func(w *Writer) error { w.Begin(1, t0, 1); return w.Close() }, "not committed"},
		{"sticky", func(w *Writer) error { w.Page(1, page); return w.Begin(1, t0, 1) }, "outside a transaction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewWriter(&bytes.Buffer{}, Header{PageSize: 512, First: 1, Last: 2})
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.do(w); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	for _, h := range []Header{{PageSize: 500, First: 1, Last: 1}, {PageSize: 512, First: 0, Last: 1}, {PageSize: 512, First: 2, Last: 1}} {
		if _, err := NewWriter(&bytes.Buffer{}, h); err == nil {
			t.Errorf("NewWriter(%+v) succeeded", h)
		}
	}
}

// The key itself is package layout's, and tested there; this is the form
// this package hands out.
func TestKey(t *testing.T) {
	if got := Key(1, 255); got != "segments/0000000000000001-00000000000000ff.seg" {
		t.Errorf("Key(1, 255) = %q", got)
	}
}
