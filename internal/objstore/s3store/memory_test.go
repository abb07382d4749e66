package s3store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
)

// patternBody is a seekable body that makes its bytes up as they are read,
// so that the test's own data adds nothing to the heap being measured. It
// deliberately has no ReadAt, which sends Put down the path that copies
// parts into buffers: the path whose memory has to be bounded.
type patternBody struct {
	size, pos int64
}

func (b *patternBody) Read(p []byte) (int, error) {
	if b.pos >= b.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), b.size-b.pos))
	for i := range n {
		off := b.pos + int64(i)
		p[i] = byte(off*7 + off>>13)
	}
	b.pos += int64(n)
	return n, nil
}

func (b *patternBody) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		b.pos = off
	case io.SeekCurrent:
		b.pos += off
	case io.SeekEnd:
		b.pos = b.size + off
	}
	return b.pos, nil
}

// TestMultipartMemoryBound uploads 96 MiB through 5 MiB parts, three at a
// time, and samples the heap throughout: it must stay within the part
// buffers (parts x concurrency) plus a fixed allowance for the HTTP client,
// far below the body's size. The server is versitygw, in its own process,
// so that the bytes it stores are not counted here.
func TestMultipartMemoryBound(t *testing.T) {
	srv := versityGW(t)
	s := srv.newStore(t) // 5 MiB parts, 3 at a time
	const size = 96 << 20
	bound := uint64(s.partSize)*uint64(s.concurrency) + 24<<20

	// The heap in use counts garbage not yet collected, as much as the
	// collector's pacing lets pile up: on a loaded machine that alone
	// moved the figure by 10 MiB from run to run. Collecting sooner keeps
	// it near what the upload holds, which is what is bounded here.
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > base.HeapInuse {
				if grown := m.HeapInuse - base.HeapInuse; grown > peak.Load() {
					peak.Store(grown)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	info, err := s.Put(context.Background(), "big", &patternBody{size: size}, objstore.PutOptions{})
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size {
		t.Fatalf("stored %d bytes, want %d", info.Size, size)
	}
	t.Logf("heap grew by at most %d MiB while uploading %d MiB (bound %d MiB)", peak.Load()>>20, size>>20, bound>>20)
	if peak.Load() > bound {
		t.Fatalf("heap grew by %d MiB during a %d MiB upload, over the bound of %d MiB", peak.Load()>>20, size>>20, bound>>20)
	}

	h := sha256.New()
	io.Copy(h, &patternBody{size: size})
	if info.SHA256 != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("stored sha256 %s differs from the body's", info.SHA256)
	}
}
