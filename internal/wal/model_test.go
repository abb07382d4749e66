package wal

import (
	"cmp"
	"errors"
	"io"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// modelFrame is one frame of a generated log.
type modelFrame struct {
	pgno, commit uint32
	fill         byte
}

// Any log made of valid frames, damaged at most once, reads as the
// transactions a plain model of SQLite's rule expects: every run of frames
// ending in a commit, up to the first frame that is damaged.
func TestReaderModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		hdr := Header{
			BigEndian: rapid.Bool().Draw(t, "bigEndian"),
			PageSize:  512,
			Seq:       rapid.Uint32().Draw(t, "seq"),
			Salt1:     rapid.Uint32().Draw(t, "salt1"),
			Salt2:     rapid.Uint32().Draw(t, "salt2"),
		}
		frames := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) modelFrame {
			f := modelFrame{
				pgno: rapid.Uint32Range(1, 12).Draw(t, "pgno"),
				fill: rapid.Byte().Draw(t, "fill"),
			}
			if rapid.IntRange(0, 3).Draw(t, "isCommit") == 0 {
				f.commit = rapid.Uint32Range(1, 14).Draw(t, "commit")
			}
			return f
		}), 0, 30).Draw(t, "frames")
		damaged := rapid.IntRange(-1, len(frames)-1).Draw(t, "damaged")
		how := rapid.IntRange(0, 3).Draw(t, "how")

		w := newWALBuilder(hdr)
		for i, f := range frames {
			if i == damaged && how == 0 {
				f.pgno = 0 // checksummed correctly, but SQLite rejects page 0
			}
			w.frame(f.pgno, f.commit, f.fill)
		}
		if damaged >= 0 {
			off := HeaderSize + damaged*(FrameHeaderSize+512)
			switch how {
			case 1:
				w.b[off+FrameHeaderSize+rapid.IntRange(0, 511).Draw(t, "byte")] ^= 1 << rapid.IntRange(0, 7).Draw(t, "bit")
			case 2:
				w.b[off+8+rapid.IntRange(0, 7).Draw(t, "saltByte")]++
			case 3:
				w.b = w.b[:off+rapid.IntRange(0, FrameHeaderSize+511).Draw(t, "cut")]
			}
		}
		valid := frames
		if damaged >= 0 {
			valid = frames[:damaged]
		}

		f := w.file()
		r := NewReader(f, w.hdr)
		var pending []modelFrame
		page := make([]byte, 512)
		for _, mf := range valid {
			pending = append(pending, mf)
			if mf.commit == 0 {
				continue
			}
			txn, err := r.Next()
			if err != nil {
				t.Fatalf("expected a transaction: %v", err)
			}
			want := map[uint32]byte{}
			for _, p := range pending {
				if p.pgno <= mf.commit {
					want[p.pgno] = p.fill
				}
			}
			if txn.Commit != mf.commit || txn.Frames != len(pending) || len(txn.Pages) != len(want) {
				t.Fatalf("got %+v, want commit %d, %d frames, %d pages", summary(txn), mf.commit, len(pending), len(want))
			}
			if !slices.IsSortedFunc(txn.Pages, func(a, b PageRef) int { return cmp.Compare(a.Pgno, b.Pgno) }) {
				t.Fatal("pages not sorted")
			}
			for _, ref := range txn.Pages {
				if err := r.ReadPage(ref, page); err != nil {
					t.Fatal(err)
				}
				if fill, ok := want[ref.Pgno]; !ok || page[0] != fill || page[511] != fill {
					t.Fatalf("page %d holds %q, want %q", ref.Pgno, page[0], fill)
				}
			}
			pending = pending[:0]
		}
		if _, err := r.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last commit: %v, want io.EOF", err)
		}
	})
}
