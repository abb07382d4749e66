package segment

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

// benchSegment is 100 transactions of 10 half-random 4 KiB pages.
func benchSegment(b *testing.B) (Header, []txnModel, int64) {
	rng := rand.New(rand.NewPCG(1, 1))
	h := Header{PageSize: 4096, First: 1, Last: 100}
	var txns []txnModel
	var raw int64
	for i := range 100 {
		txn := txnModel{TXID: uint64(i + 1), Time: time.Unix(0, int64(i)), DBSize: 1000}
		for p := range 10 {
			data := make([]byte, 4096)
			for j := range 2048 {
				data[j] = byte(rng.Uint32())
			}
			txn.Pages = append(txn.Pages, Page{Pgno: uint32(p*50 + 1), Data: data})
			raw += 4096
		}
		txns = append(txns, txn)
	}
	return h, txns, raw
}

func BenchmarkWriter(b *testing.B) {
	h, txns, raw := benchSegment(b)
	b.SetBytes(raw)
	for b.Loop() {
		encode(b, h, txns)
	}
}

func BenchmarkVerify(b *testing.B) {
	h, txns, raw := benchSegment(b)
	data := encode(b, h, txns)
	b.SetBytes(raw)
	for b.Loop() {
		if _, err := Verify(bytes.NewReader(data), Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data))/float64(raw), "stored/raw")
}
