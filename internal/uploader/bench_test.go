package uploader_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
	"github.com/ferrydb/ferry/internal/uploader"
)

// BenchmarkShipFiles measures files/s and MB/s from files on disk to
// versitygw through the spool: each file is copied into the spool
// (fsynced), then uploaded by the uploader's workers, checked, and removed.
// It reports the two phases apart and together, and the process's peak RSS
// during the run.
func BenchmarkShipFiles(b *testing.B) {
	for _, tc := range []struct {
		name  string
		files int
		size  int64
	}{
		{"10000x4KiB", 10000, 4 << 10},
		{"8x256MiB", 8, 256 << 20},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := testenv.S3(b)
			b.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
			b.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
			src := b.TempDir()
			for i := range tc.files {
				writePattern(b, filepath.Join(src, fmt.Sprintf("f%05d", i)), tc.size, i)
			}
			for b.Loop() {
				bucket := testenv.Bucket(b, srv)
				url := fmt.Sprintf("s3://%s/bench?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint)
				sp, err := spool.Open(filepath.Join(b.TempDir(), "spool"), spool.Options{})
				if err != nil {
					b.Fatal(err)
				}
				testenv.ResetPeakRSS()
				start := time.Now()
				for i := range tc.files {
					name := fmt.Sprintf("f%05d", i)
					if _, err := uploader.EnqueueFile(sp, filepath.Join(src, name), name, []string{url}, false); err != nil {
						b.Fatal(err)
					}
				}
				enqueued := time.Since(start)
				u := uploader.New(sp, func(ctx context.Context, url string) (objstore.Store, error) {
					return target.OpenURL(ctx, url, target.Options{})
				}, uploader.Options{})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- u.Run(ctx) }()
				for sp.Len(uploader.FilesQueue) > 0 {
					time.Sleep(2 * time.Millisecond)
				}
				total := time.Since(start)
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				sp.Close()
				mb := float64(tc.files) * float64(tc.size) / 1e6
				b.ReportMetric(float64(tc.files)/total.Seconds(), "files/s")
				b.ReportMetric(mb/total.Seconds(), "MB/s")
				b.ReportMetric(float64(tc.files)/enqueued.Seconds(), "enqueue-files/s")
				b.ReportMetric(float64(tc.files)/(total-enqueued).Seconds(), "upload-files/s")
				b.ReportMetric(testenv.PeakRSS(), "peak-RSS-MiB")
			}
		})
	}
}

// writePattern writes a file of size bytes, distinct per seed, without
// holding it in memory.
func writePattern(b *testing.B, path string, size int64, seed int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	buf := make([]byte, 64<<10)
	for off := int64(0); off < size; off += int64(len(buf)) {
		for i := range buf {
			buf[i] = byte(int64(seed)*31 + (off+int64(i))*7)
		}
		n := min(int64(len(buf)), size-off)
		if _, err := w.Write(buf[:n]); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
