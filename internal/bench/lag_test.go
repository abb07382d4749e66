package bench

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
)

// syncInterval is the capture's sync interval in the lag and TPS
// benchmarks: the default, which DESIGN.md's lag goal is stated against.
const syncInterval = time.Second

// BenchmarkLag measures replication lag, commit to restorable from the
// target, for every commit of three workloads, with a sync interval of 1s:
//
//   - sporadic: 50 single-row commits 200 ms apart;
//   - quiet: 12 single-row commits spaced wider than the sync interval,
//     so that each is the first after a quiet period;
//   - 500tps: single-row commits paced at 500 txn/s for 10 s.
//
// The application reports each commit's time as its COMMIT returns; the
// benchmark knows the txid each commit gets (the txid captured before the
// workload plus the commit's number, checked at the end) and polls
// Status every millisecond until the target restores it. max-wal-MiB is
// the size of the log when the application stopped: whether ferry's
// checkpoints let SQLite restart it under that load.
func BenchmarkLag(b *testing.B) {
	for _, w := range []struct {
		name string
		job  appJob
	}{
		{"sporadic", appJob{Interval: 200 * time.Millisecond, Count: 50}},
		{"quiet", appJob{Interval: syncInterval + 250*time.Millisecond, Count: 12}},
		{"500tps", appJob{Interval: 2 * time.Millisecond, For: 10 * time.Second}},
	} {
		b.Run(w.name, func(b *testing.B) {
			srv := s3Server(b)
			var lags []time.Duration
			var elapsed time.Duration
			var walMiB float64
			commits := 0
			for b.Loop() {
				db := newAppDB(b)
				r := startReplica(b, srv, db, capture.Options{SyncInterval: syncInterval})
				job := w.job
				job.Do, job.DB, job.Report = "insert", db, true
				l, n, took := ferryLag(b, r, job, &walMiB)
				elapsed += took
				lags = append(lags, l...)
				commits += n
				if err := r.stop(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(ms(percentile(lags, 50)), "p50-ms")
			b.ReportMetric(ms(percentile(lags, 99)), "p99-ms")
			b.ReportMetric(ms(percentile(lags, 100)), "max-ms")
			b.ReportMetric(float64(commits)/elapsed.Seconds(), "txn/s")
			b.ReportMetric(walMiB, "max-wal-MiB")
			if ls := litestreamPath(b); ls != "" {
				job := w.job
				job.Do, job.Report = "insert", true
				ll := litestreamLag(b, ls, srv, job)
				if ll == nil {
					return
				}
				b.ReportMetric(ms(percentile(ll, 50)), "litestream-p50-ms")
				b.ReportMetric(ms(percentile(ll, 99)), "litestream-p99-ms")
				b.ReportMetric(ms(percentile(lags, 50))/ms(percentile(ll, 50)), "p50-ratio")
				b.ReportMetric(ms(percentile(lags, 99))/ms(percentile(ll, 99)), "p99-ratio")
			}
		})
	}
}

// newAppDB creates the 1-row-insert workloads' database, an empty table
// in WAL mode, in a new directory.
func newAppDB(b *testing.B) string {
	db := filepath.Join(b.TempDir(), "app.db")
	runApp(b, appJob{Do: "create", DB: db})
	return db
}

// ferryLag runs job against r's database and returns the lag of every
// commit, the number of commits and how long the application took. It
// raises walMiB to the log's size when the application stopped.
func ferryLag(b *testing.B, r *replica, job appJob, walMiB *float64) ([]time.Duration, int, time.Duration) {
	b.Helper()
	base := r.Status().TXID
	// Ending the context kills the application if the benchmark fails
	// while it runs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := startApp(ctx, job)
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var pending []time.Time // commit times of base+first+1, ...
	first := 0              // commits already replicated
	var lags []time.Duration
	polled := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(polled)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			reached := r.Status().Targets[0].Replicated
			now := time.Now()
			mu.Lock()
			for len(pending) > 0 && base+uint64(first)+1 <= reached {
				lags = append(lags, now.Sub(pending[0]))
				pending = pending[1:]
				first++
			}
			mu.Unlock()
		}
	}()
	defer func() {
		close(stop)
		<-polled
	}()
	var last string
	for l := range a.lines {
		last = l
		if c, err := parseCommit(l); err == nil {
			mu.Lock()
			if c.seq != first+len(pending)+1 {
				mu.Unlock()
				b.Fatalf("application reported commit %d out of order", c.seq)
			}
			pending = append(pending, c.at)
			mu.Unlock()
		}
	}
	if err := <-a.done; err != nil {
		b.Fatal(err)
	}
	n, took, err := parseDone(last)
	if err != nil {
		b.Fatal(err)
	}
	if fi, err := os.Stat(job.DB + "-wal"); err == nil {
		*walMiB = max(*walMiB, float64(fi.Size())/(1<<20))
	}
	st := r.waitFor(b, "every commit to reach the target", time.Minute, func(st capture.Status) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(pending) == 0 && first == n
	})
	// The txid of each commit was inferred as base plus its number; that
	// holds only if the capture gave every commit its own txid and none
	// to anything else.
	if st.TXID != base+uint64(n) {
		b.Fatalf("%d commits took the capture from txid %d to %d; the lag figures are not per commit", n, base, st.TXID)
	}
	mu.Lock()
	defer mu.Unlock()
	return lags, n, took
}
