package capture

import (
	"bytes"
	"io"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/ferrydb/ferry/internal/segment"
)

// TestBatchFlight checks the batch in flight: the change set its flight
// writes is the one the batch would have made on the spot; the batch
// after it counts as not empty until it lands; and a batch in flight that
// takes the next one back (absorb) makes one change set of both, in
// order.
func TestBatchFlight(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir := t.TempDir()
		b, err := openBatch(dir, 1<<10)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { b.close() }()
		const ps = 512
		txid := uint64(1)
		add := func(b *batch, n int) {
			for range n {
				if err := b.begin(txid, time.Unix(0, int64(txid)), 9, 2, ps); err != nil {
					rt.Fatal(err)
				}
				for _, pgno := range []uint32{1, 2 + uint32(txid%7)} {
					if err := b.page(pgno, bytes.Repeat([]byte{byte(txid)}, ps)); err != nil {
						rt.Fatal(err)
					}
				}
				b.commit(txid)
				txid++
			}
		}
		add(b, rapid.IntRange(1, 5).Draw(rt, "sealed"))
		want := segmentOf(rt, b)
		sealed := b
		next, err := b.seal(point{txid: txid - 1})
		if err != nil {
			rt.Fatal(err)
		}
		b = next
		if b.empty() {
			rt.Fatal("the batch after one in flight is empty")
		}
		add(b, rapid.IntRange(0, 5).Draw(rt, "next"))
		<-b.ahead.done
		if got := segmentOf(rt, sealed); !bytes.Equal(got, want) {
			rt.Fatal("the flight's change set differs from the batch's own")
		}
		if !sealed.sealed || sealed.end.txid != sealed.last {
			rt.Fatalf("sealed %v, end %d, last txid %d", sealed.sealed, sealed.end.txid, sealed.last)
		}
		if rapid.Bool().Draw(rt, "absorb") {
			b.ahead = nil
			if err := sealed.absorb(b); err != nil {
				rt.Fatal(err)
			}
			b = sealed
			if b.sealed || b.seg != nil {
				rt.Fatal("a batch that took the next back is still sealed")
			}
			checkTxids(rt, segmentOf(rt, b), 1, txid-1)
			return
		}
		// Given up with the batch after it: nothing is left in flight.
		if err := b.reset(); err != nil {
			rt.Fatal(err)
		}
		if !b.empty() || b.ahead != nil || b.spare != sealed || sealed.seg != nil || sealed.txns != 0 {
			rt.Fatal("reset left the batch in flight behind")
		}
	})
}

func segmentOf(t *rapid.T, b *batch) []byte {
	var out bytes.Buffer
	if err := b.writeSegment(&out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// checkTxids checks that seg holds exactly txids first..last.
func checkTxids(t *rapid.T, seg []byte, first, last uint64) {
	r, _, err := segment.Open(bytes.NewReader(seg), segment.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for want := first; want <= last; want++ {
		txn, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if txn.TXID != want {
			t.Fatalf("txid %d, want %d", txn.TXID, want)
		}
		for {
			p, err := r.NextPage()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Data[0] != byte(want) {
				t.Fatalf("txid %d holds a page of txid %d", want, p.Data[0])
			}
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("more transactions than %d..%d: %v", first, last, err)
	}
}
