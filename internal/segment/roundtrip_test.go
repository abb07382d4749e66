package segment

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// genPage returns page bytes that are either incompressible or mostly
// repeated, as real pages are both.
func genPage(t *rapid.T, pageSize int) []byte {
	seed := rapid.Uint64().Draw(t, "seed")
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	b := make([]byte, pageSize)
	if rapid.Bool().Draw(t, "random") {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	} else {
		fill := byte(rng.Uint32())
		for i := range b {
			b[i] = fill
		}
		b[rng.IntN(pageSize)] = byte(seed)
	}
	return b
}

func TestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pageSize := rapid.SampledFrom([]int{512, 1024, 4096, 65536}).Draw(t, "pageSize")
		maxPages := 12
		if pageSize == 65536 {
			maxPages = 3
		}
		n := rapid.IntRange(1, 6).Draw(t, "txns")
		first := rapid.OneOf(
			rapid.Uint64Range(1, 1000),
			rapid.Uint64Range(math.MaxUint64-10, math.MaxUint64-5),
		).Draw(t, "first")
		h := Header{PageSize: pageSize, First: first, Last: first + uint64(n) - 1}
		var txns []txnModel
		for i := range n {
			dbSize := rapid.Uint32Range(1, 1<<31).Draw(t, "dbSize")
			hi := min(dbSize, 64)
			pgnos := rapid.SliceOfNDistinct(rapid.Uint32Range(1, hi), 0, maxPages, rapid.ID[uint32]).Draw(t, "pgnos")
			if rapid.Bool().Draw(t, "lastPage") {
				pgnos = append(pgnos, dbSize)
			}
			slices.Sort(pgnos)
			pgnos = slices.Compact(pgnos)
			txn := txnModel{
				TXID:   first + uint64(i),
				Time:   time.Unix(0, rapid.Int64Range(0, math.MaxInt64).Draw(t, "nanos")).UTC(),
				DBSize: dbSize,
			}
			for _, pgno := range pgnos {
				txn.Pages = append(txn.Pages, Page{Pgno: pgno, Data: genPage(t, pageSize)})
			}
			txns = append(txns, txn)
		}
		data := encode(t, h, txns)
		gotH, got, info, err := decode(data)
		if err != nil {
			t.Fatal(err)
		}
		if gotH != h {
			t.Fatalf("header %+v, wrote %+v", gotH, h)
		}
		if len(got) != len(txns) {
			t.Fatalf("%d transactions, wrote %d", len(got), len(txns))
		}
		var pages uint64
		for i := range txns {
			w, g := txns[i], got[i]
			if w.TXID != g.TXID || !w.Time.Equal(g.Time) || w.DBSize != g.DBSize || len(w.Pages) != len(g.Pages) {
				t.Fatalf("txn %d: got %+v, wrote %+v", i, g, w)
			}
			for j := range w.Pages {
				if w.Pages[j].Pgno != g.Pages[j].Pgno || !bytes.Equal(w.Pages[j].Data, g.Pages[j].Data) {
					t.Fatalf("txn %d page %d differs", i, j)
				}
			}
			pages += uint64(len(w.Pages))
		}
		if info.Txns != uint64(n) || info.Pages != pages || info.Size != int64(len(data)) ||
			!info.FirstTime.Equal(txns[0].Time) || !info.LastTime.Equal(txns[n-1].Time) || info.DBSize != txns[n-1].DBSize {
			t.Fatalf("info %+v", info)
		}
		vinfo, err := Verify(bytes.NewReader(data), Options{})
		if err != nil || vinfo != info {
			t.Fatalf("Verify = %+v, %v; Reader said %+v", vinfo, err, info)
		}
	})
}

// TestManyPages writes transactions far larger than the encoder's window
// and the reader's buffers.
func TestManyPages(t *testing.T) {
	const pageSize, pages = 4096, 3000
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([]byte, 1<<20)
	for j := 0; j < len(pool); j += 8 {
		binary.LittleEndian.PutUint64(pool[j:], rng.Uint64())
	}
	h := Header{PageSize: pageSize, First: 1, Last: 3}
	var txns []txnModel
	for i := range 3 {
		txn := txnModel{TXID: uint64(i + 1), Time: time.Unix(int64(i), 0).UTC(), DBSize: pages * 2}
		for p := range pages {
			// Half random, half zero: pages that compress, but not to nothing.
			data := make([]byte, pageSize)
			off := rng.IntN(len(pool) - pageSize)
			copy(data[:pageSize/2], pool[off:])
			txn.Pages = append(txn.Pages, Page{Pgno: uint32(2*p + 1 + i%2), Data: data})
		}
		txns = append(txns, txn)
	}
	data := encode(t, h, txns)
	_, got, info, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pages != 3*pages || len(got) != 3 {
		t.Fatalf("info %+v", info)
	}
	for i := range txns {
		for j := range txns[i].Pages {
			if got[i].Pages[j].Pgno != txns[i].Pages[j].Pgno || !bytes.Equal(got[i].Pages[j].Data, txns[i].Pages[j].Data) {
				t.Fatalf("txn %d page %d differs", i, j)
			}
		}
	}
}

// TestOpenVerifiesFirst shows the verify-then-apply path: Open refuses a
// segment damaged in its last bytes before handing out any page, and
// reads an intact one in full.
func TestOpenVerifiesFirst(t *testing.T) {
	h, txns := sampleTxns(1024)
	data := encode(t, h, txns)
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1
	if r, _, err := Open(bytes.NewReader(bad), Options{Key: "k"}); r != nil || !isDetected(err) {
		t.Fatalf("Open(damaged) = %v, %v", r, err)
	}
	src := bytes.NewReader(append([]byte("prefix"), data...))
	src.Seek(6, io.SeekStart)
	r, info, err := Open(src, Options{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if info.Txns != 3 || info.Pages != 4 || info.Size != int64(len(data)) {
		t.Fatalf("info %+v", info)
	}
	var pages int
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := r.NextPage(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			pages++
		}
	}
	if pages != 4 || r.Info() != info {
		t.Fatalf("second pass read %d pages, info %+v", pages, r.Info())
	}
}
