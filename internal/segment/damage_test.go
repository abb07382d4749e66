package segment

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// TestEveryFlipDetected changes every byte of a small segment, three ways,
// and requires each copy to be refused.
func TestEveryFlipDetected(t *testing.T) {
	h, txns := sampleTxns(512)
	data := encode(t, h, txns)
	t.Logf("segment of %d bytes", len(data))
	for off := range data {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(data)
			bad[off] ^= mask
			if _, err := Verify(bytes.NewReader(bad), Options{}); !isDetected(err) {
				t.Fatalf("byte %d ^ %#x: Verify = %v", off, mask, err)
			}
		}
	}
}

// TestEveryTruncationDetected cuts the segment at every length and
// requires Verify to refuse it, and a streaming reader to have proven only
// transactions that really were written.
func TestEveryTruncationDetected(t *testing.T) {
	h, txns := sampleTxns(512)
	data := encode(t, h, txns)
	for n := range len(data) {
		_, err := Verify(bytes.NewReader(data[:n]), Options{Key: "k"})
		if !errors.Is(err, objstore.ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: Verify = %v", n, err)
		}
		_, proven, _, err := decode(data[:n])
		if !errors.Is(err, objstore.ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: decode = %v", n, err)
		}
		for i, got := range proven {
			if got.TXID != txns[i].TXID || len(got.Pages) != len(txns[i].Pages) {
				t.Fatalf("truncated to %d bytes: proven txn %d is %+v", n, i, got)
			}
		}
	}
}

func TestTrailingBytesDetected(t *testing.T) {
	h, txns := sampleTxns(1024)
	data := encode(t, h, txns)
	for _, extra := range [][]byte{{0}, bytes.Repeat([]byte{0}, 80), data} {
		bad := append(bytes.Clone(data), extra...)
		if _, err := Verify(bytes.NewReader(bad), Options{}); !errors.Is(err, objstore.ErrCorrupt) {
			t.Fatalf("%d extra bytes: Verify = %v", len(extra), err)
		}
	}
}

// TestDamageStopsAtLastProvenTxn flips a byte near the end of a segment
// that spans several zstd blocks: the streaming reader must still prove the
// transactions decoded before the damage, and only those, which is what
// lets a restore stop at the last provable state.
func TestDamageStopsAtLastProvenTxn(t *testing.T) {
	const pageSize, n = 4096, 60
	h := Header{PageSize: pageSize, First: 100, Last: 100 + n - 1}
	rng := rand.New(rand.NewPCG(3, 4))
	var txns []txnModel
	for i := range n {
		txn := txnModel{TXID: h.First + uint64(i), Time: time.Unix(int64(i), 0).UTC(), DBSize: 10}
		for _, pgno := range []uint32{2, 7} {
			data := make([]byte, pageSize)
			for k := range data {
				data[k] = byte(rng.Uint32())
			}
			txn.Pages = append(txn.Pages, Page{Pgno: pgno, Data: data})
		}
		txns = append(txns, txn)
	}
	data := encode(t, h, txns)
	bad := bytes.Clone(data)
	bad[len(bad)-trailerSize-1000] ^= 0x10
	_, proven, _, err := decode(bad)
	if !errors.Is(err, objstore.ErrCorrupt) {
		t.Fatalf("decode = %v", err)
	}
	if len(proven) == 0 || len(proven) == n {
		t.Fatalf("proved %d of %d transactions", len(proven), n)
	}
	for i, got := range proven {
		for j := range got.Pages {
			if !bytes.Equal(got.Pages[j].Data, txns[i].Pages[j].Data) {
				t.Fatalf("proven txn %d page %d differs from what was written", i, j)
			}
		}
	}
	t.Logf("proved %d of %d transactions before the damage", len(proven), n)
}

func TestCorruptErrorNamesKey(t *testing.T) {
	h, txns := sampleTxns(512)
	data := encode(t, h, txns)
	_, err := Verify(bytes.NewReader(data[:len(data)-1]), Options{Key: "segments/0000000000000007-0000000000000009.seg"})
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Key != "segments/0000000000000007-0000000000000009.seg" {
		t.Fatalf("err = %v", err)
	}
	if want := "segment segments/0000000000000007-0000000000000009.seg: corrupt at offset"; !bytes.HasPrefix([]byte(err.Error()), []byte(want)) {
		t.Fatalf("message %q", err)
	}
}
