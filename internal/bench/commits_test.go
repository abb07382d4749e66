package bench

import (
	"bufio"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/testenv"
)

// BenchmarkCommits measures what replication costs the application's
// commits, DESIGN.md §1's first promise: the duration of every COMMIT of
// a writer of 1-row inserts (WAL, synchronous=NORMAL, a separate
// process), without replication, with ferry, and with Litestream when it
// is on PATH, in interleaved rounds of a rotating order, on three loads:
//
//   - 500tps and 5000tps: the writer paced at that many commits a
//     second; p99 and worst commit, each as a ratio to the writer
//     without replication in the same run (goal: within 1.2x).
//   - full: the writer as fast as it goes; its throughput as a ratio to
//     without (goal >= 0.8), its worst commit (goal < 50 ms), the log's
//     peak size, sampled every 10 ms while the writer runs (goal < 64 MiB),
//     and ferry's CPU seconds per MB of log it captured, from getrusage
//     of this process (ferry runs in it; the writer and the S3 server do
//     not) from the writer's start until every commit is restorable from
//     the target. Litestream's CPU, from /proc, is put against the same
//     log bytes per commit. The peak RSS of this process (ferry's and the
//     harness's) while ferry ran is reported beside it.
//
// FERRY_BENCH_COMMITS_FOR sets each writer's run (default 5s),
// FERRY_BENCH_COMMITS_ROUNDS the rounds (default 3), and
// FERRY_BENCH_RESULTS names a file the figures are appended to as a
// Markdown table.
func BenchmarkCommits(b *testing.B) {
	for _, load := range []struct {
		name     string
		interval time.Duration
	}{
		{"500tps", 2 * time.Millisecond},
		{"5000tps", 200 * time.Microsecond},
		{"full", 0},
	} {
		b.Run(load.name, func(b *testing.B) {
			benchCommits(b, load.name, load.interval)
		})
	}
}

func benchCommits(b *testing.B, name string, interval time.Duration) {
	srv := s3Server(b)
	d, rounds := envDuration(b, "FERRY_BENCH_COMMITS_FOR", 5*time.Second), envCount(b, "FERRY_BENCH_COMMITS_ROUNDS", 3)
	ls := litestreamPath(b)
	job := appJob{Do: "latency", Interval: interval, For: d}
	arms := []*commitArm{
		{name: "without", run: func() commitRun { return withoutRun(b, job) }},
		{name: "ferry", run: func() commitRun { return ferryCommitRun(b, srv, job) }},
	}
	if ls != "" {
		arms = append(arms, &commitArm{name: "litestream", run: func() commitRun { return litestreamCommitRun(b, ls, srv, job) }})
	}
	for b.Loop() {
		for i := range rounds {
			for j := range arms {
				a := arms[(i+j)%len(arms)]
				run := a.run()
				b.Logf("round %d %s: %d commits, %.0f/s, p99 %.3f ms, worst %.2f ms, peak log %.1f MiB, cpu %.2f s",
					i+1, a.name, run.hist.n, run.rate(), ms(run.hist.percentile(99)), ms(run.hist.max),
					mib(run.peakWAL), run.cpu.Seconds())
				a.add(run)
			}
		}
	}
	without, ferry := arms[0], arms[1]
	// ferry's log bytes per commit stand for Litestream's, whose log is
	// the same workload's.
	perCommit := float64(ferry.walBytes) / float64(ferry.hist.n)
	rows := [][]string{}
	for _, a := range arms {
		b.ReportMetric(ms(a.hist.percentile(99)), "p99-ms-"+a.name)
		b.ReportMetric(ms(a.hist.max), "worst-ms-"+a.name)
		b.ReportMetric(mib(a.peakWAL), "peak-wal-MiB-"+a.name)
		if a != without {
			b.ReportMetric(ms(a.hist.percentile(99))/ms(without.hist.percentile(99)), "p99-ratio-"+a.name)
			b.ReportMetric(ms(a.hist.max)/ms(without.hist.max), "worst-ratio-"+a.name)
		}
		if interval == 0 {
			b.ReportMetric(a.rate(), "tps-"+a.name)
			if a != without {
				b.ReportMetric(a.rate()/without.rate(), "tps-ratio-"+a.name)
			}
		}
		cpuPerMB, rss := "", ""
		if a == ferry {
			b.ReportMetric(a.peakRSS, "peak-RSS-MiB-ferry")
			rss = fmt.Sprintf("%.0f", a.peakRSS)
		}
		if a != without {
			wal := float64(a.walBytes)
			if a != ferry {
				wal = perCommit * float64(a.hist.n)
			}
			if wal > 0 {
				v := a.cpu.Seconds() / (wal / 1e6)
				b.ReportMetric(v*1000, "cpu-ms-per-MB-"+a.name)
				cpuPerMB = fmt.Sprintf("%.2f", v*1000)
			}
		}
		rows = append(rows, []string{name, a.name, fmt.Sprintf("%.0f", a.rate()),
			ratio(a.rate(), without.rate()),
			fmt.Sprintf("%.3f", ms(a.hist.percentile(50))),
			fmt.Sprintf("%.3f", ms(a.hist.percentile(99))), ratio(ms(a.hist.percentile(99)), ms(without.hist.percentile(99))),
			fmt.Sprintf("%.2f", ms(a.hist.max)), ratio(ms(a.hist.max), ms(without.hist.max)),
			strings.Join(a.worsts, " "),
			fmt.Sprintf("%.1f", mib(a.peakWAL)), cpuPerMB, rss})
	}
	appendResults(b, rows, d, rounds)
}

// commitArm accumulates one arm's runs.
type commitArm struct {
	name     string
	run      func() commitRun
	hist     latHist
	took     time.Duration
	peakWAL  int64
	cpu      time.Duration
	walBytes int64
	peakRSS  float64
	worsts   []string
}

func (a *commitArm) add(r commitRun) {
	a.hist.merge(&r.hist)
	a.took += r.took
	a.peakWAL = max(a.peakWAL, r.peakWAL)
	a.cpu += r.cpu
	a.walBytes += r.walBytes
	a.peakRSS = max(a.peakRSS, r.peakRSS)
	a.worsts = append(a.worsts, fmt.Sprintf("%.1f", ms(r.hist.max)))
}

func (a *commitArm) rate() float64 { return float64(a.hist.n) / a.took.Seconds() }

// commitRun is one run of the latency writer.
type commitRun struct {
	hist     latHist
	took     time.Duration
	peakWAL  int64         // the log's largest size seen while the writer ran
	cpu      time.Duration // the replicator's CPU time, zero without one
	walBytes int64         // log bytes ferry captured, zero for the others
	peakRSS  float64       // this process's peak RSS in MiB, ferry's runs only
}

func (r commitRun) rate() float64 { return float64(r.hist.n) / r.took.Seconds() }

func withoutRun(b *testing.B, job appJob) commitRun {
	b.Helper()
	job.DB = newAppDB(b)
	return latencyRun(b, job)
}

// ferryCommitRun runs job on a new database that ferry replicates, once
// its initial snapshot is stored, and counts ferry's CPU until every
// commit is restorable from the target.
func ferryCommitRun(b *testing.B, srv testenv.S3Server, job appJob) commitRun {
	b.Helper()
	job.DB = newAppDB(b)
	debug.FreeOSMemory()
	testenv.ResetPeakRSS()
	r := startReplica(b, srv, job.DB, capture.Options{SyncInterval: syncInterval})
	base, bytes0 := r.Status().TXID, r.LogBytes()
	cpu0 := cpuTime()
	run := latencyRun(b, job)
	want := base + uint64(run.hist.n)
	r.waitFor(b, fmt.Sprintf("every commit (to txid %d) to reach the target", want), 2*time.Minute, func(st capture.Status) bool {
		return st.Targets[0].Replicated >= want
	})
	run.cpu = cpuTime() - cpu0
	run.walBytes = r.LogBytes() - bytes0
	run.peakRSS = testenv.PeakRSS()
	if err := r.stop(); err != nil {
		b.Fatal(err)
	}
	return run
}

// litestreamCommitRun runs job on a new database that litestream
// replicates, and counts litestream's CPU until two sync intervals after
// the writer stopped.
func litestreamCommitRun(b *testing.B, bin string, srv testenv.S3Server, job appJob) commitRun {
	b.Helper()
	job.DB = newAppDB(b)
	l := startLitestream(b, bin, srv, job.DB, srv.Endpoint)
	cpu0 := procCPU(l.cmd.Process.Pid)
	run := latencyRun(b, job)
	time.Sleep(2 * syncInterval)
	run.cpu = procCPU(l.cmd.Process.Pid) - cpu0
	l.stop()
	return run
}

// latencyRun runs the latency writer to its end, sampling the size of
// its log meanwhile.
func latencyRun(b *testing.B, job appJob) commitRun {
	b.Helper()
	stop := make(chan struct{})
	var peak int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if fi, err := os.Stat(job.DB + "-wal"); err == nil {
				peak = max(peak, fi.Size())
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	line := runApp(b, job)
	close(stop)
	wg.Wait()
	run := commitRun{peakWAL: peak}
	var err error
	if run.hist, run.took, err = parseLatencies(line); err != nil {
		b.Fatal(err)
	}
	return run
}

// latencies commits 1-row transactions, paced by Interval or as fast as
// it goes, for For, timing each commit, and prints their distribution
// (see latHist.String).
func (j appJob) latencies(db *sql.DB, out io.Writer) error {
	stmt, err := db.Prepare("INSERT INTO t(v) VALUES(?)")
	if err != nil {
		return err
	}
	defer stmt.Close()
	v := make([]byte, rowBytes)
	var h latHist
	start := time.Now()
	for n := 0; ; n++ {
		if j.Interval > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(n) * j.Interval)))
		}
		if time.Since(start) >= j.For {
			break
		}
		rand.Read(v)
		t0 := time.Now()
		if _, err := stmt.Exec(v); err != nil {
			return fmt.Errorf("insert %d: %w", n+1, err)
		}
		h.add(time.Since(t0))
	}
	took := time.Since(start)
	_, err = fmt.Fprintf(out, "latency %d %s\n", took.Nanoseconds(), h.String())
	return err
}

// parseLatencies parses latencies' line.
func parseLatencies(l string) (latHist, time.Duration, error) {
	var h latHist
	f := strings.Fields(l)
	if len(f) < 2 || f[0] != "latency" {
		return h, 0, fmt.Errorf("latency writer's last line %q", l)
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return h, 0, fmt.Errorf("latency writer's last line %q: %w", l, err)
	}
	if err := h.parse(f[2:]); err != nil {
		return h, 0, fmt.Errorf("latency writer's last line %q: %w", l, err)
	}
	return h, time.Duration(ns), nil
}

// latHist is a distribution of durations kept to 7 significant bits
// (under 1% off), with the exact largest.
type latHist struct {
	n      int
	max    time.Duration
	counts map[int64]int
}

func (h *latHist) add(d time.Duration) {
	if h.counts == nil {
		h.counts = map[int64]int{}
	}
	v := int64(d)
	if s := bits.Len64(uint64(v)) - 7; s > 0 {
		v = v >> s << s
	}
	h.counts[v]++
	h.n++
	h.max = max(h.max, d)
}

func (h *latHist) merge(o *latHist) {
	if h.counts == nil {
		h.counts = map[int64]int{}
	}
	for v, c := range o.counts {
		h.counts[v] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// percentile returns the p-th percentile (0..100), nearest rank; the
// 100th is the exact largest.
func (h *latHist) percentile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if p >= 100 {
		return h.max
	}
	rank := max(1, int(float64(h.n)*p/100+0.5))
	seen := 0
	for _, v := range slices.Sorted(maps.Keys(h.counts)) {
		seen += h.counts[v]
		if seen >= rank {
			return time.Duration(v)
		}
	}
	return h.max
}

// String is "MAXNS VALUE:COUNT...", for the writer's last line.
func (h *latHist) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d", int64(h.max))
	for _, v := range slices.Sorted(maps.Keys(h.counts)) {
		fmt.Fprintf(&sb, " %d:%d", v, h.counts[v])
	}
	return sb.String()
}

func (h *latHist) parse(f []string) error {
	if len(f) < 1 {
		return fmt.Errorf("no largest duration")
	}
	m, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return err
	}
	h.counts = map[int64]int{}
	for _, kv := range f[1:] {
		k, c, ok := strings.Cut(kv, ":")
		v, err1 := strconv.ParseInt(k, 10, 64)
		n, err2 := strconv.Atoi(c)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("bucket %q", kv)
		}
		h.counts[v] += n
		h.n += n
	}
	h.max = time.Duration(m)
	return nil
}

// procCPU returns the CPU time, user and system, process pid has used.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which ends with the last ')':
	// state is field 3, utime 14 and stime 15, in clock ticks of 1/100 s.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// appendResults appends rows to the file FERRY_BENCH_RESULTS names, if
// any, as a Markdown table.
func appendResults(b *testing.B, rows [][]string, d time.Duration, rounds int) {
	b.Helper()
	path := os.Getenv("FERRY_BENCH_RESULTS")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "\n%s, %d rounds of %s each (%s)\n\n", time.Now().Format(time.DateTime), rounds, d, os.Getenv("FERRY_BENCH_LABEL"))
	fmt.Fprintln(w, "| load | arm | commits/s | ratio | p50 ms | p99 ms | ratio | worst ms | ratio | worst per round | peak log MiB | CPU ms per MB of log | peak RSS MiB |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}

func ratio(a, b float64) string {
	if b == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f", a/b)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// envDuration reads a Go duration from the variable name, or returns def.
func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	return d
}

// envCount reads a count of at least 1 from the variable name, or
// returns def.
func envCount(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a count of at least 1", name, s)
	}
	return n
}
