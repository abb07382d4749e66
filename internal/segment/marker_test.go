package segment

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"pgregory.net/rapid"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
)

// goldenBreak is the version 1 break marker for txid 42. Followers read
// markers that replicators of any later build write, so the bytes must
// not move until the version does.
var goldenBreak = filepath.Join("testdata", "v1.gap")

func TestGoldenBreak(t *testing.T) {
	got := MarshalBreak(42)
	if *update {
		if err := os.WriteFile(goldenBreak, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenBreak)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("MarshalBreak(42) =\n%x\nthe golden marker is\n%x", got, want)
	}
	h, err := ParseHead(want, layout.ChangeSetKey(42))
	if err != nil || h != (layout.Head{First: 42, Break: true}) {
		t.Fatalf("ParseHead(golden) = %+v, %v", h, err)
	}
}

func TestParseHeadOfSegment(t *testing.T) {
	data, err := os.ReadFile(goldenSegment)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHead(data[:headerSize], layout.ChangeSetKey(41))
	if err != nil || h != (layout.Head{First: 41, Last: 43}) {
		t.Fatalf("ParseHead(golden segment) = %+v, %v", h, err)
	}
}

func TestBreakRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		txid := rapid.Uint64Min(1).Draw(t, "txid")
		h, err := ParseHead(MarshalBreak(txid), "")
		if err != nil || h != (layout.Head{First: txid, Break: true}) {
			t.Fatalf("ParseHead(MarshalBreak(%d)) = %+v, %v", txid, h, err)
		}
	})
}

// Any damage to the marker is damage, never a marker for another txid.
func TestParseHeadRefusesDamage(t *testing.T) {
	for i := range BreakSize * 8 {
		b := MarshalBreak(42)
		b[i/8] ^= 1 << (i % 8)
		if h, err := ParseHead(b, "k"); !errors.Is(err, objstore.ErrCorrupt) {
			t.Fatalf("bit %d flipped: ParseHead = %+v, %v; want damage", i, h, err)
		}
	}
	if _, err := ParseHead(MarshalBreak(42)[:39], "k"); !errors.Is(err, objstore.ErrCorrupt) {
		t.Fatalf("short marker: %v", err)
	}
	var zero [BreakSize]byte
	if _, err := ParseHead(zero[:], "k"); !errors.Is(err, objstore.ErrCorrupt) {
		t.Fatalf("zeros: %v", err)
	}
}

func FuzzParseHead(f *testing.F) {
	f.Add(MarshalBreak(1))
	f.Add(make([]byte, headerSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHead(b, "k")
		if err == nil && h.Break && !bytes.Equal(MarshalBreak(h.First), b[:BreakSize]) {
			t.Fatalf("ParseHead accepted %x as the marker of %d", b, h.First)
		}
	})
}

func TestTrim(t *testing.T) {
	data, err := os.ReadFile(goldenSegment)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	h, err := Trim(&buf, bytes.NewReader(data), 42)
	if err != nil || h.First != 42 || h.Last != 43 {
		t.Fatalf("Trim = %+v, %v", h, err)
	}
	_, want := goldenInput()
	_, got, _, err := decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].TXID != 42 || got[1].TXID != 43 || len(got[1].Pages) != len(want[2].Pages) || !got[1].Time.Equal(want[2].Time) {
		t.Fatalf("trimmed segment holds %+v", got)
	}
	for _, from := range []uint64{41, 44, 1} {
		if _, err := Trim(io.Discard, bytes.NewReader(data), from); err == nil {
			t.Errorf("Trim at %d succeeded", from)
		}
	}
}
