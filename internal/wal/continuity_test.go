package wal

import (
	"errors"
	"io"
	"os"
	"testing"
)

// breakReason returns the Reason of a *BreakError, failing the test for any
// other error.
func breakReason(t *testing.T, err error) Break {
	t.Helper()
	var be *BreakError
	if !errors.As(err, &be) || !errors.Is(err, ErrContinuity) {
		t.Fatalf("got %v, want a continuity break", err)
	}
	if be.Error() == "" || be.Reason.String() == "" {
		t.Fatal("empty message")
	}
	return be.Reason
}

func TestContinuitySynthetic(t *testing.T) {
	// The log as the position was taken: two transactions.
	orig := newWALBuilder(testHeader).frame(1, 1, 'a').frame(2, 2, 'b')
	pos := func() Position {
		f := orig.file()
		hdr, _ := ReadHeader(f)
		r := NewReader(f, hdr)
		readAll(t, r)
		return r.Position()
	}()

	restarted := testHeader
	restarted.Seq++
	restarted.Salt1++
	saltOnly := testHeader
	saltOnly.Salt2 ^= 1
	bigger := restarted
	bigger.PageSize = 1024
	flipped := testHeader
	flipped.BigEndian = true

	tests := []struct {
		name string
		log  func() []byte
		pos  Position
		want Break // 0: continues
	}{
		{"unchanged", func() []byte { return orig.b }, pos, 0},
		{"grown", func() []byte {
			return append([]byte(nil), newWALBuilder(testHeader).frame(1, 1, 'a').frame(2, 2, 'b').frame(3, 3, 'c').b...)
		}, pos, 0},
		{"at the first frame", func() []byte { return orig.b }, testHeader.encodeParsed(t).Start(), 0},
		{"empty", func() []byte { return nil }, pos, BreakTruncated},
		{"shorter than its header", func() []byte { return orig.b[:20] }, pos, BreakTruncated},
		{"cut before the position", func() []byte { return orig.b[:len(orig.b)-512-FrameHeaderSize] }, pos, BreakTruncated},
		{"cut inside the last frame", func() []byte { return orig.b[:len(orig.b)-1] }, pos, BreakTruncated},
		{"garbage header", func() []byte { b := append([]byte(nil), orig.b...); b[0] = 0; return b }, pos, BreakHeader},
		{"restarted", func() []byte { return newWALBuilder(restarted).frame(1, 1, 'x').b }, pos, BreakSeq},
		{"new salts", func() []byte { return newWALBuilder(saltOnly).frame(1, 1, 'a').frame(2, 2, 'b').b }, pos, BreakSalt},
		{"new page size", func() []byte { return newWALBuilder(bigger).frame(1, 1, 'x').b }, pos, BreakPageSize},
		{"other frames, same salts", func() []byte {
			return newWALBuilder(testHeader).frame(1, 1, 'a').frame(2, 2, 'c').frame(3, 3, 'd').b
		}, pos, BreakOverwritten},
		{"zero position", func() []byte { return orig.b }, Position{}, BreakPosition},
		{"negative page size", func() []byte { return orig.b }, Position{Offset: 100, PageSize: -24}, BreakPosition},
		{"position between frames", func() []byte { return orig.b }, Position{Offset: pos.Offset - 1, PageSize: 512}, BreakPosition},
		{"byte order flipped", func() []byte { return newWALBuilder(flipped).frame(1, 1, 'a').frame(2, 2, 'b').b }, pos, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &memFile{b: tt.log()}
			r, err := Resume(f, tt.pos)
			switch tt.want {
			case 0:
				if err != nil {
					t.Fatal(err)
				}
				if _, err := r.Next(); err != nil && !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
			case -1:
				// A flipped byte order changes every checksum, so the
				// frame before the position no longer matches.
				if got := breakReason(t, err); got != BreakOverwritten {
					t.Fatalf("got %v", got)
				}
			default:
				if got := breakReason(t, err); got != tt.want {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
			// A Reader already at pos reports the same from Next.
			if tt.want != 0 && tt.pos.valid() {
				old := orig.file()
				hdr, _ := ReadHeader(old)
				r := NewReader(old, hdr)
				readAll(t, r)
				old.b = tt.log()
				_, err := r.Next()
				breakReason(t, err)
				if _, err2 := r.Next(); err2 == nil || err2.Error() != err.Error() {
					t.Fatalf("break not repeated: %v then %v", err, err2)
				}
			}
		})
	}
}

func (h Header) encodeParsed(t *testing.T) Header {
	t.Helper()
	b := h.encode()
	h, err := parseHeader(b[:])
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// SQLite's own resets: a checkpoint in RESTART or TRUNCATE mode, then new
// writes that overwrite the log from its start.
func TestContinuitySQLite(t *testing.T) {
	for _, mode := range []string{"RESTART", "TRUNCATE"} {
		t.Run(mode, func(t *testing.T) {
			l := openLive(t, 4096)
			w := newWorkload(t, l, 1)
			for range 5 {
				w.step(t)
			}
			f, r := l.openWAL(t)
			readAll(t, r)
			pos := r.Position()
			hdr, _ := ReadHeader(f)

			l.exec(t, "PRAGMA wal_checkpoint("+mode+")")
			fi, err := os.Stat(l.walPath())
			if err != nil {
				t.Fatal(err)
			}
			if mode == "TRUNCATE" {
				if fi.Size() != 0 {
					t.Fatalf("log is %d bytes after TRUNCATE", fi.Size())
				}
				_, err := r.Next()
				if got := breakReason(t, err); got != BreakTruncated || !errors.Is(err, ErrNoHeader) {
					t.Fatalf("got %v", err)
				}
			} else {
				// RESTART leaves the old log in place until the next write;
				// it still continues from pos, with nothing new.
				if _, err := r.Next(); !errors.Is(err, io.EOF) {
					t.Fatalf("after RESTART, before a write: %v", err)
				}
			}

			w.insert(t, 1)
			hdr2, err := ReadHeader(f)
			if err != nil {
				t.Fatal(err)
			}
			// SQLite's restart rule: next sequence number, first salt plus
			// one, second salt drawn anew.
			if hdr2.Seq != hdr.Seq+1 || hdr2.Salt1 != hdr.Salt1+1 || hdr2.Salt2 == hdr.Salt2 {
				t.Errorf("header before %+v, after %+v", hdr, hdr2)
			}
			_, err = r.Next()
			if got := breakReason(t, err); got != BreakSeq {
				t.Fatalf("got %v", err)
			}
			if _, err := Resume(f, pos); breakReason(t, err) != BreakSeq {
				t.Fatalf("Resume: %v", err)
			}

			// The new generation reads from its start, and the database as
			// checkpointed plus the new log is the live database.
			r2 := NewReader(f, hdr2)
			newTxns := readAll(t, r2)
			if len(newTxns) != 1 {
				t.Fatalf("%d transactions in the new log, want 1", len(newTxns))
			}
			db, err := os.ReadFile(l.path)
			if err != nil {
				t.Fatal(err)
			}
			path := rebuild(t, t.TempDir(), db, r2, 4096, newTxns)
			if got, want := contentHash(t, path), contentHash(t, l.path); got != want {
				t.Fatalf("checkpointed database + new log: %s, live %s", got, want)
			}
		})
	}
}
