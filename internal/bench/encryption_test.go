package bench

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/testenv"
)

// BenchmarkEncryption measures what encryption at rest costs a whole
// snapshot of the large database (FERRY_BENCH_DB_BYTES) to versitygw and
// its restore, against the same without encryption, in one process:
// rounds (FERRY_BENCH_ROUNDS, default 2) of plain, sealed, sealed, plain,
// each into a new bucket, so that neither side has the warmer cache or
// the emptier bucket. A snapshot is snapshot.Write with the capture's
// parallelism, every chunk uploaded; a restore is snapshot.Restore with
// 8 fetches at once into a new file, fsync included. Ratios are sealed
// over plain MB/s; under 1 means encryption is slower.
func BenchmarkEncryption(b *testing.B) {
	srv := s3Server(b)
	dir := b.TempDir()
	db := filepath.Join(dir, "enc.db")
	runApp(b, appJob{Do: "build", DB: db, Bytes: dbBytes(b)})
	src, err := os.Open(db)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	pageSize, pages := dbShape(b, src)
	size := float64(pageSize) * float64(pages)
	text, _, err := seal.Generate(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	key, err := seal.ParseKey([]byte(text))
	if err != nil {
		b.Fatal(err)
	}
	ring, err := seal.NewRing(key)
	if err != nil {
		b.Fatal(err)
	}
	rounds := 2
	if s := os.Getenv("FERRY_BENCH_ROUNDS"); s != "" {
		if rounds, err = strconv.Atoi(s); err != nil || rounds < 1 {
			b.Fatalf("FERRY_BENCH_ROUNDS=%q: want a positive number", s)
		}
	}
	var snap, rest [2]time.Duration // [plain, sealed]
	for b.Loop() {
		for r := range rounds {
			for _, sealed := range []bool{r%2 == 1, r%2 == 0} {
				// ABBA: plain, sealed, sealed, plain, ...
				i := 0
				var keys *seal.Ring
				if sealed {
					i, keys = 1, ring
				}
				s, rs := encryptionRound(b, srv, src, pageSize, pages, keys, dir)
				snap[i] += s
				rest[i] += rs
				b.Logf("round %d sealed=%v: snapshot %.0f MB/s, restore %.0f MB/s", r, sealed, size/1e6/s.Seconds(), size/1e6/rs.Seconds())
			}
		}
	}
	mbps := func(d time.Duration) float64 { return size / 1e6 / (d.Seconds() / float64(rounds*b.N)) }
	b.ReportMetric(mbps(snap[0]), "plain-snapshot-MB/s")
	b.ReportMetric(mbps(snap[1]), "sealed-snapshot-MB/s")
	b.ReportMetric(mbps(snap[1])/mbps(snap[0]), "snapshot-ratio")
	b.ReportMetric(mbps(rest[0]), "plain-restore-MB/s")
	b.ReportMetric(mbps(rest[1]), "sealed-restore-MB/s")
	b.ReportMetric(mbps(rest[1])/mbps(rest[0]), "restore-ratio")
	b.ReportMetric(size/1e6, "db-MB")
}

// encryptionRound snapshots src into a new bucket through keys (nil for
// none) and restores it, and returns how long each took.
func encryptionRound(b *testing.B, srv testenv.S3Server, src *os.File, pageSize int, pages uint32, keys *seal.Ring, dir string) (snap, rest time.Duration) {
	b.Helper()
	ctx := context.Background()
	var store objstore.Store = seal.New(seal.Raw(bucketStore(b, srv, testenv.Bucket(b, srv))), keys, dir)
	start := time.Now()
	m, _, err := snapshot.Write(ctx, store, src, pageSize, pages, 1, time.Now(), snapshot.Options{Parallelism: 4, Addresser: keys.Addresser()})
	if err != nil {
		b.Fatal(err)
	}
	snap = time.Since(start)
	out := filepath.Join(dir, "restored.db")
	rest = timeWrite(b, out, func(dst *os.File) error { return snapshot.Restore(ctx, store, m, dst, 8, keys.Keys()) })
	return snap, rest
}

// dbShape reads the page size and page count from a database's header.
func dbShape(b *testing.B, f *os.File) (int, uint32) {
	b.Helper()
	var h [100]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		b.Fatal(err)
	}
	pageSize := int(binary.BigEndian.Uint16(h[16:]))
	if pageSize == 1 {
		pageSize = 65536
	}
	return pageSize, binary.BigEndian.Uint32(h[28:])
}
