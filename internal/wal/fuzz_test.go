package wal

import (
	"errors"
	"io"
	"os"
	"testing"
)

// seedLogs returns logs to start fuzzing from: synthetic ones in both byte
// orders, and one SQLite wrote.
func seedLogs(f *testing.F) [][]byte {
	f.Helper()
	be := testHeader
	be.BigEndian = true
	seeds := [][]byte{
		newWALBuilder(testHeader).b,
		newWALBuilder(testHeader).frame(1, 1, 'a').frame(2, 0, 'b').frame(1, 2, 'c').b,
		newWALBuilder(be).frame(3, 0, 'a').frame(3, 0, 'b').frame(1, 3, 'c').frame(4, 0, 'd').b,
		newWALBuilder(testHeader).frame(1, 1, 'a').corruptLast().b,
	}
	// A small log as SQLite writes it, with a transaction in progress.
	l := openLive(f, 512)
	w := newWorkload(f, l, 3)
	w.insert(f, 2)
	l.exec(f, "BEGIN")
	w.insert(f, 4)
	log, err := os.ReadFile(l.walPath())
	if err != nil {
		f.Fatal(err)
	}
	l.exec(f, "COMMIT")
	return append(seeds, log)
}

func FuzzReadHeader(f *testing.F) {
	for _, s := range seedLogs(f) {
		f.Add(s[:HeaderSize])
	}
	f.Add([]byte{})
	f.Add(rawHeader(magicBig, Version, 65536))
	f.Add(rawHeader(magicLittle, Version, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(&memFile{b: b})
		switch {
		case len(b) < HeaderSize:
			if !errors.Is(err, ErrNoHeader) {
				t.Fatalf("%d bytes: %v", len(b), err)
			}
		case err != nil:
			if !errors.Is(err, ErrBadHeader) {
				t.Fatalf("got %v, want ErrBadHeader", err)
			}
		default:
			if !validPageSize(h.PageSize) {
				t.Fatalf("accepted page size %d", h.PageSize)
			}
			if enc := h.encode(); string(enc[:]) != string(b[:HeaderSize]) {
				t.Fatal("accepted a header that does not encode back to itself")
			}
		}
	})
}

// FuzzReader feeds arbitrary bytes to the reader: it must not panic, must
// yield only transactions an independent check verifies, and must use
// memory in proportion to the input.
func FuzzReader(f *testing.F) {
	for _, s := range seedLogs(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file := &memFile{b: b}
		hdr, err := ReadHeader(file)
		if err != nil {
			return
		}
		r := NewReader(file, hdr)
		maxFrames := (len(b) - HeaderSize) / (FrameHeaderSize + hdr.PageSize)
		var txns []Txn
		frames := 0
		for {
			txn, err := r.Next()
			if errors.Is(err, io.EOF) || errors.Is(err, ErrCorrupt) {
				break
			}
			if err != nil {
				t.Fatalf("after %d transactions: %v", len(txns), err)
			}
			frames += txn.Frames
			if frames > maxFrames {
				t.Fatalf("%d frames yielded from a log with room for %d", frames, maxFrames)
			}
			txns = append(txns, txn)
		}
		if err := verifyTxns(b, hdr, txns); err != nil {
			t.Fatal(err)
		}
		page := make([]byte, hdr.PageSize)
		for _, txn := range txns {
			for _, ref := range txn.Pages {
				if err := r.ReadPage(ref, page); err != nil {
					t.Fatal(err)
				}
			}
		}
		r2, err := Resume(file, r.Position())
		if err != nil {
			t.Fatalf("resume at the end of what was read: %v", err)
		}
		if txn, err := r2.Next(); err == nil {
			t.Fatalf("resumed reader found a transaction the first missed: %+v", summary(txn))
		}
	})
}
