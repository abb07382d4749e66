package wal

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"pgregory.net/rapid"
)

// A transaction's Data holds exactly the bytes ReadPage returns for each
// of its pages, whatever the page size and however the transaction falls
// across read-ahead boundaries, and is nil only for a transaction whose
// frames do not fit in maxHeldBytes. The log grows between calls to Next,
// as SQLite appends to it, and Recheck comes between them as the capture
// calls it.
func TestReaderData(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ps := rapid.SampledFrom([]int{512, 4096, 65536}).Draw(t, "pageSize")
		hdr := Header{PageSize: ps, Salt1: 1, Salt2: 2, BigEndian: rapid.Bool().Draw(t, "bigEndian")}
		w := newWALBuilder(hdr)
		f := &memFile{b: append([]byte(nil), w.b...)}
		r := NewReader(f, w.hdr)
		fs := int64(FrameHeaderSize + ps)
		page := make([]byte, ps)
		n := 0
		for step := range rapid.IntRange(1, 6).Draw(t, "steps") {
			// Big transactions are most of the point: ones that span
			// read-ahead boundaries and ones past what is held.
			txns := rapid.IntRange(0, 4).Draw(t, "txns")
			for range txns {
				frames := rapid.IntRange(1, int(2*maxHeldBytes/fs)+2).Draw(t, "frames")
				if rapid.Bool().Draw(t, "small") {
					frames = rapid.IntRange(1, 3).Draw(t, "smallFrames")
				}
				for i := range frames {
					n++
					commit := uint32(0)
					if i == frames-1 {
						commit = 200
					}
					w.frame(uint32(1+rapid.IntRange(0, 199).Draw(t, "pgno")), commit, byte(n))
				}
			}
			// A transaction still being written at the end.
			pending := rapid.Bool().Draw(t, "pending")
			if pending {
				w.frame(7, 0, 0xee)
			}
			f.b = append(f.b[:0], w.b...)
			if step > 0 && rapid.Bool().Draw(t, "recheck") {
				r.Recheck()
			}
			for {
				txn, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				fits := int64(txn.Frames)*fs <= maxHeldBytes/fs*fs
				if fits != (txn.Data != nil) {
					t.Fatalf("a transaction of %d frames of %d bytes has Data %v", txn.Frames, fs, txn.Data != nil)
				}
				if txn.Data != nil && len(txn.Data) != len(txn.Pages) {
					t.Fatalf("%d pages, %d in Data", len(txn.Pages), len(txn.Data))
				}
				for i, ref := range txn.Pages {
					if err := r.ReadPage(ref, page); err != nil {
						t.Fatal(err)
					}
					if txn.Data != nil && !bytes.Equal(txn.Data[i], page) {
						t.Fatalf("page %d at offset %d: Data differs from the log", ref.Pgno, ref.Offset)
					}
				}
			}
			if pending {
				// The pending transaction is dropped, as SQLite drops a
				// rolled-back one, and later frames overwrite it.
				w.b = w.b[:int64(len(w.b))-fs]
				w.s1, w.s2 = r.Position().Sum1, r.Position().Sum2
			}
		}
	})
}

// Recheck forgets what was read ahead: frames that SQLite rewrote since
// (an uncommitted transaction's, rewritten before it commits) are read
// again, not taken from the buffer.
func TestReaderRecheckRereads(t *testing.T) {
	w := newWALBuilder(testHeader)
	w.frame(1, 1, 'a')
	f := w.file()
	hdr, err := ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(f, hdr)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	// A transaction in progress: read ahead, not yet committed.
	s1, s2 := w.s1, w.s2
	w.frame(2, 0, 'b')
	f.b = append(f.b[:0], w.b...)
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want io.EOF", err)
	}
	// SQLite rewrites the page and commits.
	w.b = w.b[:len(w.b)-FrameHeaderSize-512]
	w.s1, w.s2 = s1, s2
	w.frame(2, 2, 'c')
	f.b = append(f.b[:0], w.b...)
	r.Recheck()
	txn, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if len(txn.Data) != 1 || txn.Data[0][0] != 'c' {
		t.Fatalf("got %+v, want page 2 holding 'c'", summary(txn))
	}
}
