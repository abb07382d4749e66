package capture

import (
	"bytes"
	"io"
	"os"
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
		b, err := openBatch(dir, 1<<10, newMemoryBudget(rapid.Int64Range(0, 8<<10).Draw(rt, "memory")))
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { b.close() }()
		useSmallChunks(rt, b)
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
		useSmallChunks(rt, b)
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

// useSmallChunks has an empty batch hold memory in chunks, and write a
// file it spilled to, a few bytes at a time, so that records lie across
// chunks and writes.
func useSmallChunks(t *rapid.T, b *batch) {
	b.data.free()
	b.data.first = rapid.Int64Range(1, 4<<10).Draw(t, "firstChunk")
	b.data.chunk = rapid.Int64Range(b.data.first, 8<<10).Draw(t, "chunk")
	b.data.limit = rapid.IntRange(1, 8<<10).Draw(t, "spillChunk")
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

// TestBatchMemory checks how batches share the process's memory bound: a
// batch within it never writes its file; one that finds the bound taken
// spills and still makes the same change set; a batch that empties after
// using little of its memory gives it back, and the next batch of another
// database gets it; closing gives back the rest.
func TestBatchMemory(t *testing.T) {
	const ps = 4096
	const maxBytes = 2 * batchChunk
	mem := newMemoryBudget(4 * batchChunk)
	fill := func(b *batch, bytes int64) {
		t.Helper()
		for txid := uint64(1); b.data.size < bytes; txid++ {
			if err := b.begin(txid, time.Unix(0, int64(txid)), 100, 1, ps); err != nil {
				t.Fatal(err)
			}
			page := make([]byte, ps)
			page[0] = byte(txid)
			if err := b.page(uint32(1+txid%99), page); err != nil {
				t.Fatal(err)
			}
			b.commit(txid)
		}
	}
	encoded := func(b *batch) []byte {
		t.Helper()
		var out bytes.Buffer
		if err := b.writeSegment(&out); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	fileSize := func(b *batch) int64 {
		t.Helper()
		fi, err := b.f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}

	a, err := newBatch(t.TempDir(), batchName, maxBytes, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	b, err := newBatch(t.TempDir(), batchName, maxBytes, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()

	fill(a, maxBytes)
	if a.data.spilled || fileSize(a) != 0 {
		t.Fatalf("a batch within the bound wrote %d bytes to its file", fileSize(a))
	}
	fill(b, maxBytes)
	if !b.data.spilled || fileSize(b) == 0 {
		t.Fatal("a batch past the bound did not spill to its file")
	}
	if used := mem.inUse(); used > 4*batchChunk {
		t.Fatalf("batches hold %d bytes, the bound is %d", used, 4*batchChunk)
	}
	if !bytes.Equal(encoded(a), encoded(b)) {
		t.Fatal("the batch that spilled made another change set than the one held in memory")
	}

	// a ships a full batch (keeps its memory), then a small one (gives it
	// back); b's next batch is then held in memory whole.
	held := mem.inUse()
	if err := a.reset(); err != nil {
		t.Fatal(err)
	}
	if mem.inUse() != held {
		t.Fatal("a batch that used all of its memory gave it back")
	}
	fill(a, 1)
	if err := a.reset(); err != nil {
		t.Fatal(err)
	}
	if err := b.reset(); err != nil {
		t.Fatal(err)
	}
	if mem.inUse() >= held {
		t.Fatalf("a batch that used %d bytes still holds %d chunks", ps, len(a.data.chunks))
	}
	fill(b, maxBytes)
	if b.data.spilled {
		t.Fatal("memory given back was not there for the next batch")
	}
	a.close()
	b.close()
	if n := mem.inUse(); n != 0 {
		t.Fatalf("closed batches hold %d bytes", n)
	}
}

// TestBatchDataKeepsWhatItCouldNotWrite checks a batch whose file refuses
// writes (a spool disk without room): a spill and later writes fail, yet
// the batch loses no byte, and once the file takes writes again the next
// flush puts all of it there.
func TestBatchDataKeepsWhatItCouldNotWrite(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/batch"
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer readOnly.Close()
	mem := newMemoryBudget(2 * 64)
	d := newBatchData(readOnly, mem, 1<<20)
	d.chunk, d.limit = 64, 100
	var want []byte
	for i := range 10 {
		p := bytes.Repeat([]byte{byte(i)}, 50)
		err := d.write(p)
		want = append(want, p...)
		if len(want) > 2*64 && err == nil {
			t.Fatalf("write %d past the memory bound to a file that refuses writes succeeded", i)
		}
	}
	if !d.spilled || mem.inUse() != 2*64 {
		t.Fatalf("spilled %v, memory held %d", d.spilled, mem.inUse())
	}
	got, err := io.ReadAll(d.reader())
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the batch reads %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	writable, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer writable.Close()
	d.f = writable
	if err := d.flush(); err != nil {
		t.Fatal(err)
	}
	if d.flushed != int64(len(want)) || len(d.buf) != 0 {
		t.Fatalf("flushed %d bytes with %d held, want %d flushed", d.flushed, len(d.buf), len(want))
	}
	file, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(file, want) {
		t.Fatalf("the file holds %d bytes (%v), want the %d written", len(file), err, len(want))
	}
	if err := d.rollback(0, 1<<20); err != nil || d.spilled || d.size != 0 {
		t.Fatalf("emptied: %v, spilled %v, size %d", err, d.spilled, d.size)
	}
	d.free()
	if mem.inUse() != 0 {
		t.Fatal("freed chunks are still held")
	}
}
