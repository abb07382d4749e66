package wal

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

var testHeader = Header{PageSize: 512, Seq: 7, Salt1: 0x01020304, Salt2: 0xa0b0c0d0}

type wantTxn struct {
	commit uint32
	pages  []uint32 // page numbers, in order
	fills  []byte   // the byte each page is filled with
}

func TestReaderSynthetic(t *testing.T) {
	other := testHeader
	other.Salt2++
	lock := LockPage(512)
	tests := []struct {
		name  string
		build func(w *walBuilder)
		want  []wantTxn
		err   error // from the Next after the last wanted txn; nil means io.EOF
	}{
		{"header only", func(w *walBuilder) {}, nil, nil},
		{"one commit", func(w *walBuilder) { w.frame(1, 1, 'a') }, []wantTxn{{1, []uint32{1}, []byte{'a'}}}, nil},
		{"no commit yet", func(w *walBuilder) { w.frame(1, 0, 'a').frame(2, 0, 'b') }, nil, nil},
		{"two transactions", func(w *walBuilder) {
			w.frame(2, 0, 'a').frame(1, 2, 'b').frame(3, 3, 'c')
		}, []wantTxn{{2, []uint32{1, 2}, []byte{'b', 'a'}}, {3, []uint32{3}, []byte{'c'}}}, nil},
		{"transaction in progress after a commit", func(w *walBuilder) {
			w.frame(1, 1, 'a').frame(2, 0, 'b').frame(3, 0, 'c')
		}, []wantTxn{{1, []uint32{1}, []byte{'a'}}}, nil},
		{"page written twice keeps the latest", func(w *walBuilder) {
			w.frame(2, 0, 'a').frame(3, 0, 'b').frame(2, 0, 'c').frame(1, 3, 'd')
		}, []wantTxn{{3, []uint32{1, 2, 3}, []byte{'d', 'c', 'b'}}}, nil},
		{"pages past the commit size are left out", func(w *walBuilder) {
			w.frame(5, 0, 'a').frame(4, 0, 'b').frame(1, 3, 'c')
		}, []wantTxn{{3, []uint32{1}, []byte{'c'}}}, nil},
		{"bad checksum ends the log", func(w *walBuilder) {
			w.frame(1, 1, 'a').frame(2, 2, 'b').corruptLast()
		}, []wantTxn{{1, []uint32{1}, []byte{'a'}}}, nil},
		{"bad checksum hides later commits", func(w *walBuilder) {
			w.frame(1, 0, 'a').corruptLast().frame(2, 2, 'b')
		}, nil, nil},
		{"frames of another generation are not read", func(w *walBuilder) {
			w.frame(1, 1, 'a')
			o := newWALBuilder(other)
			o.s1, o.s2 = w.s1, w.s2
			o.frame(2, 2, 'b')
			w.b = append(w.b, o.b[HeaderSize:]...)
		}, []wantTxn{{1, []uint32{1}, []byte{'a'}}}, nil},
		{"page number zero ends the log", func(w *walBuilder) {
			w.frame(1, 1, 'a').frame(0, 2, 'b')
		}, []wantTxn{{1, []uint32{1}, []byte{'a'}}}, nil},
		{"partial frame at the end", func(w *walBuilder) {
			w.frame(1, 1, 'a').frame(2, 2, 'b')
			w.b = w.b[:len(w.b)-1]
		}, []wantTxn{{1, []uint32{1}, []byte{'a'}}}, nil},
		{"lock page is corruption", func(w *walBuilder) {
			w.frame(1, 1, 'a').frame(lock, lock+1, 'b')
		}, []wantTxn{{1, []uint32{1}, []byte{'a'}}}, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWALBuilder(testHeader)
			tt.build(w)
			f := w.file()
			hdr, err := ReadHeader(f)
			if err != nil {
				t.Fatal(err)
			}
			r := NewReader(f, hdr)
			var got []Txn
			for range tt.want {
				txn, err := r.Next()
				if err != nil {
					t.Fatalf("after %d transactions: %v", len(got), err)
				}
				got = append(got, txn)
			}
			_, err = r.Next()
			if tt.err == nil && !errors.Is(err, io.EOF) || tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("after %d transactions: %v, want %v", len(got), err, tt.err)
			}
			if err := verifyTxns(f.b, hdr, got); err != nil {
				t.Fatal(err)
			}
			page := make([]byte, hdr.PageSize)
			for i, txn := range got {
				want := tt.want[i]
				if txn.Commit != want.commit || len(txn.Pages) != len(want.pages) {
					t.Fatalf("txn %d: commit %d, %d pages; want %d, %d", i, txn.Commit, len(txn.Pages), want.commit, len(want.pages))
				}
				for j, ref := range txn.Pages {
					if err := r.ReadPage(ref, page); err != nil {
						t.Fatal(err)
					}
					if ref.Pgno != want.pages[j] || page[0] != want.fills[j] || page[len(page)-1] != want.fills[j] {
						t.Fatalf("txn %d page %d: pgno %d fill %q, want %d %q", i, j, ref.Pgno, page[0], want.pages[j], want.fills[j])
					}
				}
			}
			end := hdr.Start()
			if len(got) > 0 {
				end = got[len(got)-1].End
			}
			if r.Position() != end {
				t.Fatalf("position %v, want %v", r.Position(), end)
			}
		})
	}
}

// A transaction still being written must not be yielded, and must be
// yielded whole once its commit frame lands.
func TestReaderPendingThenCommitted(t *testing.T) {
	w := newWALBuilder(testHeader)
	w.frame(1, 1, 'a').frame(2, 0, 'b')
	f := w.file()
	hdr, _ := ReadHeader(f)
	r := NewReader(f, hdr)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	mid := r.Position()
	// Valid salts, wrong checksum: a frame half written.
	w.frame(3, 3, 'c').corruptLast()
	f.b = append(f.b[:0], w.b...)
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("torn commit frame: %v, want io.EOF", err)
	}
	if r.Position() != mid {
		t.Fatalf("position moved to %v over an uncommitted tail", r.Position())
	}
	w.corruptLast() // the write completes
	f.b = append(f.b[:0], w.b...)
	txn, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if txn.Start != mid || txn.Frames != 2 || txn.Commit != 3 || len(txn.Pages) != 2 {
		t.Fatalf("got %+v", summary(txn))
	}
	if err := verifyTxns(f.b, hdr, []Txn{{Start: hdr.Start(), End: mid, Commit: 1, Pages: []PageRef{{Pgno: 1, Offset: HeaderSize}}}, txn}); err != nil {
		t.Fatal(err)
	}
}

func TestReadPageRefusesChangedFrames(t *testing.T) {
	w := newWALBuilder(testHeader)
	w.frame(1, 0, 'a').frame(2, 2, 'b')
	f := w.file()
	hdr, _ := ReadHeader(f)
	r := NewReader(f, hdr)
	txn, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, hdr.PageSize)
	if err := r.ReadPage(txn.Pages[0], page[:10]); err == nil || errors.Is(err, ErrChanged) {
		t.Fatalf("short buffer: %v", err)
	}

	// The page bytes change under the same header: SQLite rewriting a
	// frame of a transaction the scan caught before its checksums were
	// redone.
	f.b[txn.Pages[0].Offset+FrameHeaderSize+5] = 'z'
	if err := r.ReadPage(txn.Pages[0], page); !errors.Is(err, ErrChanged) {
		t.Fatalf("changed page: %v, want ErrChanged", err)
	}
	if restarted, err := r.Restarted(); restarted || err != nil {
		t.Fatalf("a frame changed under the same header: Restarted says %v, %v", restarted, err)
	}
	if err := r.ReadPage(txn.Pages[1], page); err != nil || !bytes.Equal(page, bytes.Repeat([]byte{'b'}, len(page))) {
		t.Fatalf("unchanged page: %v", err)
	}

	// The log restarted and a new generation overwrote the frame with a
	// valid frame of its own.
	next := testHeader
	next.Seq++
	next.Salt1++
	f.b = newWALBuilder(next).frame(2, 2, 'n').b
	if err := r.ReadPage(txn.Pages[1], page); !errors.Is(err, ErrChanged) {
		t.Fatalf("overwritten frame: %v, want ErrChanged", err)
	}
	if restarted, err := r.Restarted(); !restarted || err != nil {
		t.Fatalf("a new generation's header: Restarted says %v, %v", restarted, err)
	}
	f.b = f.b[:HeaderSize]
	if err := r.ReadPage(txn.Pages[1], page); !errors.Is(err, ErrChanged) {
		t.Fatalf("truncated log: %v, want ErrChanged", err)
	}
	// An empty log (a TRUNCATE checkpoint) or a damaged header is no
	// restart of SQLite's: it is not taken for one.
	for _, b := range [][]byte{nil, append(bytes.Clone(f.b[:4]), make([]byte, HeaderSize-4)...)} {
		f.b = b
		if restarted, err := r.Restarted(); restarted || err != nil {
			t.Fatalf("log of %d bytes: Restarted says %v, %v", len(b), restarted, err)
		}
	}
}

func TestLockPage(t *testing.T) {
	for _, tt := range []struct {
		pageSize int
		want     uint32
	}{{512, 2097153}, {1024, 1048577}, {4096, 262145}, {65536, 16385}} {
		got := LockPage(tt.pageSize)
		if got != tt.want {
			t.Errorf("LockPage(%d) = %d, want %d", tt.pageSize, got, tt.want)
		}
		if start := int64(got-1) * int64(tt.pageSize); start > pendingByte || start+int64(tt.pageSize) <= pendingByte {
			t.Errorf("page %d does not hold byte %d", got, pendingByte)
		}
	}
}
