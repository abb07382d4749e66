package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/snapshot"
	"github.com/ferrydb/ferry/internal/testenv"
)

// fixtureSnapshotInterval is the capture's snapshot interval on the
// large database: short, so that the snapshot after each update starts
// as soon as the update commits.
const fixtureSnapshotInterval = 2 * time.Second

// dbBytes is the size of the large database: FERRY_BENCH_DB_BYTES (bytes
// or a unit, "1GiB"), 64 MiB by default so that a default run is quick.
func dbBytes(b *testing.B) int64 {
	s := os.Getenv("FERRY_BENCH_DB_BYTES")
	if s == "" {
		return 64 << 20
	}
	n, err := config.ParseSize(s)
	if err != nil {
		b.Fatalf("FERRY_BENCH_DB_BYTES: %v", err)
	}
	if n < 1<<20 {
		b.Fatalf("FERRY_BENCH_DB_BYTES=%s: use at least 1MiB", s)
	}
	return n
}

// fixture is the large database, one wide row per page, replicated by a
// capture that runs from the first benchmark that needs it to the end of
// the process, so that SnapshotCost and Restore share it.
type fixture struct {
	dir  string
	db   string
	rows int64
	r    *replica

	// The initial snapshot.
	initDur  time.Duration
	initUse  usage
	initPeak float64
}

var fixtures struct {
	sync.Mutex
	f    *fixture
	open []*fixture // every fixture started, for closeFixtures
}

// sharedFixture returns the large database, building and replicating it
// on the first call.
func sharedFixture(b *testing.B) *fixture {
	b.Helper()
	fixtures.Lock()
	defer fixtures.Unlock()
	if fixtures.f != nil {
		return fixtures.f
	}
	srv := s3Server(b)
	size := dbBytes(b)
	dir, err := os.MkdirTemp("", "ferry-bench-")
	if err != nil {
		b.Fatal(err)
	}
	f := &fixture{dir: dir, db: filepath.Join(dir, "large.db")}
	fixtures.open = append(fixtures.open, f)
	start := time.Now()
	if _, err := fmt.Sscanf(runApp(b, appJob{Do: "build", DB: f.db, Bytes: size}), "done %d", &f.rows); err != nil {
		b.Fatal(err)
	}
	b.Logf("built a %d MiB database of %d rows in %s", size>>20, f.rows, time.Since(start).Round(time.Millisecond))
	debug.FreeOSMemory()
	testenv.ResetPeakRSS()
	start = time.Now()
	f.r = runReplica(b, srv, f.db, capture.Options{SnapshotInterval: fixtureSnapshotInterval})
	f.r.waitSnapshot(b)
	f.initDur = time.Since(start)
	f.initPeak = testenv.PeakRSS()
	f.initUse = since(nil, f.r.store.counts(), "chunks", "packs", "snapshots")
	fixtures.f = f
	return f
}

// closeFixtures stops every fixture's capture and removes its files.
func closeFixtures() {
	fixtures.Lock()
	defer fixtures.Unlock()
	for _, f := range fixtures.open {
		if f.r != nil {
			if err := f.r.stop(); err != nil {
				fmt.Fprintf(os.Stderr, "stop the capture of %s: %v\n", f.db, err)
			}
		}
		os.RemoveAll(f.dir)
	}
	fixtures.open, fixtures.f = nil, nil
}

// BenchmarkSnapshotCost measures what the capture uploads for a snapshot
// of the large database: the initial one, then the one after a single
// transaction that changes 1% of the database's pages, in two shapes:
//
//   - clustered: that many rows appended to the table, so new pages at
//     the end of the file (plus page 1 and the table's rightmost interior
//     pages);
//   - random: that many distinct rows, picked uniformly, rewritten in
//     place, so that many distinct leaf pages all over the file.
//
// The capture takes the snapshots itself (snapshot interval 2s, with
// the dirty chunks it tracked from the log). ns/op is, for the initial
// snapshot, the time from opening the capture to the snapshot stored, and
// for the others from the change's commit to its snapshot stored (the
// snapshot interval included). Bytes and requests are those
// of chunk and manifest objects, counted by a wrapper around the store
// the capture writes through; the change set of the same transaction is
// reported apart. Rows are random bytes, so compression saves only the
// empty end of each page: the byte figures are an upper bound.
func BenchmarkSnapshotCost(b *testing.B) {
	f := sharedFixture(b)
	b.Run("initial", func(b *testing.B) {
		for b.Loop() {
		}
		m := f.manifest(b, f.r.Status().Targets[0].Snapshot)
		size := float64(m.Size())
		b.ReportMetric(100*float64(f.initUse.putBytes)/size, "bytes-%")
		b.ReportMetric(float64(f.initUse.calls), "requests")
		b.ReportMetric(size/1e6/f.initDur.Seconds(), "MB/s")
		b.ReportMetric(f.initPeak, "peak-RSS-MiB")
		b.ReportMetric(float64(f.initDur.Nanoseconds()), "ns/op")
	})
	for _, shape := range []string{"clustered", "random"} {
		b.Run(shape, func(b *testing.B) {
			var snapBytes, snapCalls, segBytes, packs, size, peak float64
			for b.Loop() {
				u, seg, m, p := f.change(b, shape)
				snapBytes += float64(u.putBytes)
				snapCalls += float64(u.calls)
				segBytes += float64(seg.putBytes)
				packs += float64(u.byOp["packs/put"])
				size += float64(m.Size())
				peak = max(peak, p)
				b.Logf("%s: %d bytes in %d requests %v; change set %d bytes", shape, u.putBytes, u.calls, u.byOp, seg.putBytes)
			}
			n := float64(b.N)
			b.ReportMetric(100*snapBytes/size, "bytes-%")
			b.ReportMetric(snapCalls/n, "requests")
			b.ReportMetric(packs/n, "pack-puts")
			b.ReportMetric(100*segBytes/size, "changeset-bytes-%")
			b.ReportMetric(peak, "peak-RSS-MiB")
		})
	}
}

// change commits one transaction of the given shape on 1% of the pages,
// waits for the snapshot that follows it and for its change set, and
// returns what the snapshot and the change set uploaded, the snapshot's
// manifest and the peak RSS meanwhile.
func (f *fixture) change(b *testing.B, shape string) (snap, seg usage, m snapshot.Manifest, peak float64) {
	b.Helper()
	st := f.r.Status()
	pages := f.manifest(b, st.Targets[0].Snapshot).PageCount
	rows := int((int64(pages) + 99) / 100)
	job := appJob{Do: "append", DB: f.db, Rows: rows}
	if shape == "random" {
		job = appJob{Do: "update", DB: f.db, Rows: rows, MaxID: f.rows}
	}
	before := f.r.store.counts()
	debug.FreeOSMemory()
	testenv.ResetPeakRSS()
	runApp(b, job)
	txid := st.TXID + 1
	f.r.waitFor(b, "the snapshot after the change", 30*time.Minute, func(s capture.Status) bool {
		if s.TXID > txid {
			b.Fatalf("one transaction took the capture from txid %d to %d", st.TXID, s.TXID)
		}
		return s.Targets[0].Snapshot >= txid && s.SpoolSegments == 0
	})
	peak = testenv.PeakRSS()
	after := f.r.store.counts()
	if shape == "clustered" {
		f.rows += int64(rows)
	}
	return since(before, after, "chunks", "packs", "snapshots"), since(before, after, "segments"), f.manifest(b, txid), peak
}

// manifest loads the snapshot at txid, without counting the requests.
func (f *fixture) manifest(b *testing.B, txid uint64) snapshot.Manifest {
	b.Helper()
	m, err := snapshot.Load(context.Background(), f.r.store.next, txid)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkRestore measures restoring the large database, as the last
// snapshot left it (after SnapshotCost when both run), from versitygw into
// a new file with 8 chunk fetches at once. MB/s is the database's size
// over the whole of restore.ToFile: fetch, decompress, write, fsync,
// PRAGMA integrity_check and rename. fetch-MB/s covers only the snapshot's
// chunks into a file, fsync included; disk-MB/s is this disk's sequential
// write speed (the same number of bytes, 1 MiB writes, then fsync),
// measured in the same run as the reference.
func BenchmarkRestore(b *testing.B) {
	f := sharedFixture(b)
	ctx := context.Background()
	store := f.r.store.next
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		b.Fatal(err)
	}
	plan, err := cat.PlanTXID(0)
	if err != nil {
		b.Fatal(err)
	}
	m := f.manifest(b, plan.Snapshot.TXID)
	size := float64(m.Size())
	dir := b.TempDir()
	var full, fetch, disk time.Duration
	var peak float64
	for b.Loop() {
		out := filepath.Join(dir, "restored.db")
		debug.FreeOSMemory()
		testenv.ResetPeakRSS()
		start := time.Now()
		if _, err := restore.ToFile(ctx, store, plan, out, restore.Options{Parallelism: 8}); err != nil {
			b.Fatal(err)
		}
		full += time.Since(start)
		peak = max(peak, testenv.PeakRSS())
		os.Remove(out)

		fetch += timeWrite(b, out, func(dst *os.File) error { return snapshot.Restore(ctx, store, m, dst, 8, nil) })
		disk += timeWrite(b, out, func(dst *os.File) error { return writeBytes(dst, m.Size()) })
	}
	n := float64(b.N)
	b.ReportMetric(size/1e6/(full.Seconds()/n), "MB/s")
	b.ReportMetric(size/1e6/(fetch.Seconds()/n), "fetch-MB/s")
	b.ReportMetric(size/1e6/(disk.Seconds()/n), "disk-MB/s")
	b.ReportMetric(size/1e6, "db-MB")
	b.ReportMetric(peak, "peak-RSS-MiB")
}

// timeWrite times write into a new file at path, fsync included, and
// removes the file.
func timeWrite(b *testing.B, path string, write func(*os.File) error) time.Duration {
	b.Helper()
	dst, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(path)
	defer dst.Close()
	start := time.Now()
	if err := write(dst); err != nil {
		b.Fatal(err)
	}
	if err := dst.Sync(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// writeBytes writes n bytes to w in 1 MiB writes.
func writeBytes(w io.Writer, n int64) error {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for n > 0 {
		k, err := w.Write(buf[:min(n, int64(len(buf)))])
		if err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}
