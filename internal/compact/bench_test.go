package compact_test

import (
	"context"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/compact"
	"github.com/ferrydb/ferry/internal/objstore"
)

// BenchmarkRestoreLongChain measures a restore of the latest txid of a
// replica holding a snapshot and 2,000 one-transaction change sets after
// it, before compaction and after: listing, planning, fetching and
// verifying each change set, applying it, SQLite's integrity check and
// the rename, all of restore.ToFile. It runs on a file store and, when
// FERRY_TEST_S3_ENDPOINT names one, on a real S3 server.
func BenchmarkRestoreLongChain(b *testing.B) {
	for _, backend := range []struct {
		name string
		open func(testing.TB) objstore.Store
	}{
		{"file", func(tb testing.TB) objstore.Store { s, _ := fileStore(tb); return s }},
		{"s3", s3Store},
	} {
		b.Run(backend.name, func(b *testing.B) {
			store := backend.open(b)
			h := build(b, store, 1, 2000)
			want := h.sums[len(h.sums)-1]
			measure := func(name string) {
				b.Run(name, func(b *testing.B) {
					var n int
					for b.Loop() {
						var got [32]byte
						got, n = restoreSum(b, store, 0)
						if got != want {
							b.Fatal("the latest txid restores to another database")
						}
					}
					b.ReportMetric(float64(n), "segments")
				})
			}
			measure("before")
			start := time.Now()
			rep, err := compact.Run(context.Background(), store, compact.Options{MinAge: -1})
			if err != nil {
				b.Fatal(err)
			}
			var size int64
			for _, m := range rep.Merged {
				size += m.Size
			}
			b.Logf("compaction: %d change sets (%d bytes) into %d (%d bytes) in %s",
				len(rep.Deleted), rep.Bytes, len(rep.Merged), size, time.Since(start).Round(time.Millisecond))
			measure("after")
		})
	}
}
