package bench

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/testenv"
)

// tpsFor is how long each writer runs; FERRY_BENCH_TPS_FOR overrides it
// (a Go duration).
func tpsFor(b *testing.B) time.Duration {
	if s := os.Getenv("FERRY_BENCH_TPS_FOR"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("FERRY_BENCH_TPS_FOR: %v", err)
		}
		return d
	}
	return 5 * time.Second
}

// tpsRounds is how many times each writer runs; FERRY_BENCH_TPS_ROUNDS
// overrides it.
func tpsRounds(b *testing.B) int {
	if s := os.Getenv("FERRY_BENCH_TPS_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("FERRY_BENCH_TPS_ROUNDS=%q: want a count of at least 1", s)
		}
		return n
	}
	return 2
}

// BenchmarkWriterTPS measures the application's overhead from
// replication: the rate of 1-row inserts, each its own transaction
// (WAL, synchronous=NORMAL), that one application connection sustains
// for a fixed time on a new database nobody replicates ("without"), and
// on a new database of the same kind that ferry replicates ("with",
// initial snapshot taken before the writer starts). The machine is
// shared and its speed drifts, so the writers alternate over several
// rounds, in a rotating order, and the rates are averaged.
//
// It also reports, for ferry: how long it took after the writer stopped
// to have every commit restorable from the target; its CPU time while
// the writer ran, in % of one core; the size the log had grown to when
// the writer stopped; and the peak RSS of its process.
func BenchmarkWriterTPS(b *testing.B) {
	srv := s3Server(b)
	d, rounds := tpsFor(b), tpsRounds(b)
	ls := litestreamPath(b)
	var without, with, lsTPS, catchUp, cpu, walMiB, peak float64
	arms := []func(){
		func() { tps, _ := insertFor(b, newAppDB(b), d); without += tps },
		func() {
			run := ferryTPS(b, srv, d)
			with += run.tps
			catchUp += run.catchUp.Seconds()
			cpu += run.cpu
			walMiB = max(walMiB, run.walMiB)
			peak = max(peak, run.peak)
		},
	}
	if ls != "" {
		arms = append(arms, func() { lsTPS += litestreamTPS(b, ls, srv, d) })
	}
	runs := 0
	for b.Loop() {
		for i := range rounds {
			for j := range arms {
				arms[(i+j)%len(arms)]()
			}
			runs++
		}
	}
	n := float64(runs)
	b.ReportMetric(without/n, "tps-without")
	b.ReportMetric(with/n, "tps-with")
	b.ReportMetric(with/without, "ratio")
	b.ReportMetric(catchUp/n, "catch-up-s")
	b.ReportMetric(100*cpu/n, "ferry-CPU-%")
	b.ReportMetric(walMiB, "max-wal-MiB")
	b.ReportMetric(peak, "peak-RSS-MiB")
	if ls != "" {
		b.ReportMetric(lsTPS/n, "tps-litestream")
		b.ReportMetric(lsTPS/without, "litestream-ratio")
		b.ReportMetric(with/lsTPS, "ferry-vs-litestream")
	}
}

// ferryRun is one run of the insert workload under ferry.
type ferryRun struct {
	tps     float64
	catchUp time.Duration
	cpu     float64 // CPU time over wall time while the writer ran
	walMiB  float64 // the log's size when the writer stopped
	peak    float64
}

// ferryTPS runs the insert workload for d on a new database that ferry
// replicates.
func ferryTPS(b *testing.B, srv testenv.S3Server, d time.Duration) ferryRun {
	b.Helper()
	db := newAppDB(b)
	debug.FreeOSMemory()
	testenv.ResetPeakRSS()
	r := startReplica(b, srv, db, capture.Options{SyncInterval: syncInterval})
	base := r.Status().TXID
	cpu0, wall0 := cpuTime(), time.Now()
	tps, n := insertFor(b, db, d)
	stopped := time.Now()
	run := ferryRun{tps: tps, cpu: float64(cpuTime()-cpu0) / float64(stopped.Sub(wall0))}
	if fi, err := os.Stat(db + "-wal"); err == nil {
		run.walMiB = float64(fi.Size()) / (1 << 20)
	}
	want := base + uint64(n)
	r.waitFor(b, fmt.Sprintf("every commit (to txid %d) to reach the target", want), 2*time.Minute, func(st capture.Status) bool {
		return st.Targets[0].Replicated >= want
	})
	run.catchUp = time.Since(stopped)
	run.peak = testenv.PeakRSS()
	if err := r.stop(); err != nil {
		b.Fatal(err)
	}
	return run
}

// insertFor runs the insert workload on db for d and returns its rate
// and commit count.
func insertFor(b *testing.B, db string, d time.Duration) (float64, int) {
	b.Helper()
	n, took, err := parseDone(runApp(b, appJob{Do: "insert", DB: db, For: d}))
	if err != nil {
		b.Fatal(err)
	}
	return float64(n) / took.Seconds(), n
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
