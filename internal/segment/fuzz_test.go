package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ferrydb/ferry/internal/objstore"
)

// maxReadAlloc bounds what reading any one input may allocate in total: the
// decoder's window limit, a page and small change. A reader that trusted a
// length in its input would blow through it.
const maxReadAlloc = 3 * decoderMaxWindow

func FuzzReader(f *testing.F) {
	for _, ps := range []int{512, 4096} {
		h, txns := sampleTxns(ps)
		data := encode(f, h, txns)
		f.Add(data)
		f.Add(data[:len(data)/2])
		f.Add(data[:headerSize+3])
	}
	f.Add([]byte{})
	f.Add([]byte("FERRYSEG"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		info, err := Verify(bytes.NewReader(data), Options{})
		_, _, _, derr := decode(data)
		runtime.ReadMemStats(&after)
		if (err == nil) != (derr == nil) {
			t.Fatalf("Verify = %v, streaming read = %v", err, derr)
		}
		if err != nil && !isDetected(err) {
			t.Fatalf("Verify = %v: neither corrupt nor a version error", err)
		}
		if err == nil && info.Size != int64(len(data)) {
			t.Fatalf("verified %d bytes of %d", info.Size, len(data))
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > maxReadAlloc {
			t.Fatalf("reading %d bytes allocated %d bytes", len(data), n)
		}
	})
}

// TestReaderRefusesHugeWindow feeds a body compressed with a window wider
// than the decoder allows: a hostile segment could otherwise make every
// reader allocate gigabytes.
func TestReaderRefusesHugeWindow(t *testing.T) {
	h, _ := sampleTxns(512)
	hdr := h.marshal()
	var buf bytes.Buffer
	buf.Write(hdr[:])
	enc, err := zstd.NewWriter(&buf, zstd.WithWindowSize(4*decoderMaxWindow), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	// More than one block, so the frame declares its window rather than
	// its content size.
	enc.Write(bytes.Repeat([]byte{'T'}, 1<<20))
	enc.Close()
	buf.Write(make([]byte, trailerSize))
	_, err = Verify(&buf, Options{})
	if !errors.Is(err, objstore.ErrCorrupt) || !strings.Contains(err.Error(), "window") {
		t.Fatalf("Verify = %v", err)
	}
}

// TestStreamingMemoryIsFlat pipes a 64 MiB segment from a Writer into a
// Reader and bounds what they allocate in total: neither may hold the
// segment, or a transaction, in memory.
func TestStreamingMemoryIsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 64 MiB")
	}
	const pageSize, perTxn, txns = 4096, 1024, 16
	page := make([]byte, pageSize)
	rng := rand.New(rand.NewPCG(5, 6))
	pr, pw := io.Pipe()
	go func() {
		w, err := NewWriter(pw, Header{PageSize: pageSize, First: 1, Last: txns})
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		for i := range uint64(txns) {
			w.Begin(i+1, time.Unix(0, 0), perTxn)
			for p := range uint32(perTxn) {
				for j := 0; j < pageSize; j += 8 {
					binary.LittleEndian.PutUint64(page[j:], rng.Uint64())
				}
				w.Page(p+1, page)
			}
			w.Commit()
		}
		pw.CloseWithError(w.Close())
	}()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	info, err := Verify(pr, Options{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pages != perTxn*txns {
		t.Fatalf("info %+v", info)
	}
	// Both sides ran during the measurement.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("streamed %d MiB, allocated %d MiB", info.Size>>20, alloc>>20)
	if alloc > 32<<20 {
		t.Fatalf("streaming %d bytes allocated %d bytes", info.Size, alloc)
	}
}
