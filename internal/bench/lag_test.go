package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
)

// syncInterval is the capture's sync interval in the lag and TPS
// benchmarks: the default, which DESIGN.md's lag goal is stated against.
const syncInterval = time.Second

// lagRounds is how many times each lag workload runs, for ferry and for
// Litestream in turn; FERRY_BENCH_LAG_ROUNDS overrides it.
func lagRounds(b *testing.B) int {
	if s := os.Getenv("FERRY_BENCH_LAG_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("FERRY_BENCH_LAG_ROUNDS=%q: want a count of at least 1", s)
		}
		return n
	}
	return 3
}

// lagSeed is added to the round number to seed the random workload's
// gaps; FERRY_BENCH_LAG_SEED sets it, so that runs of one round each
// (of different builds, say) can take the same schedules or new ones.
func lagSeed(b *testing.B) int {
	if s := os.Getenv("FERRY_BENCH_LAG_SEED"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("FERRY_BENCH_LAG_SEED=%q: want a number", s)
		}
		return n
	}
	return 0
}

// BenchmarkLag measures replication lag, commit to restorable from the
// target, for every commit of four workloads, with a sync interval of 1s:
//
//   - random: 50 single-row commits at random gaps of 0.3-0.9 s (uniform,
//     the same gaps for ferry and Litestream in a round): about two
//     commits per interval, some close together and some almost an
//     interval apart;
//   - sporadic: 50 single-row commits 200 ms apart;
//   - quiet: 12 single-row commits spaced wider than the sync interval,
//     so that each is the first after a quiet period;
//   - 500tps: single-row commits paced at 500 txn/s for 10 s;
//   - bursts: 60 single-row commits in bursts of 2-8, 20-80 ms apart
//     within a burst, with quiet gaps between bursts of 0.1 s plus a
//     time drawn from an exponential distribution of mean 1.4 s.
//
// The application reports each commit's time as its COMMIT returns; the
// benchmark knows the txid each commit gets (the txid captured before the
// workload plus the commit's number, checked at the end) and polls
// Status every millisecond until the target restores it. max-wal-MiB is
// the size of the log when the application stopped: whether ferry's
// checkpoints let SQLite restart it under that load. puts/round counts
// the change sets ferry uploaded while the workload ran (PUTs of segment
// objects), which is what the sync interval budgets.
//
// With litestream on PATH, each round runs the workload on ferry and on
// Litestream, in an order that alternates between rounds, and the same
// figures are reported for Litestream: its lag as seen on the wire (see
// litestreamLag), and its PUTs of level-0 LTX files, its change sets
// (litestream-puts/round), and of anything (litestream-all-puts/round,
// which adds its compactions). Percentiles are over every commit of
// every round; FERRY_BENCH_LAG_ROUNDS sets the number of rounds. Each
// round's figures go to stderr as it ends, and with FERRY_BENCH_LAG_DUMP
// set to a file, every lag too (see lagDump).
func BenchmarkLag(b *testing.B) {
	for _, w := range []lagWorkload{
		{name: "random", job: appJob{Count: 50}, minGap: 300 * time.Millisecond, maxGap: 900 * time.Millisecond},
		{name: "sporadic", job: appJob{Interval: 200 * time.Millisecond, Count: 50}},
		{name: "quiet", job: appJob{Interval: syncInterval + 250*time.Millisecond, Count: 12}},
		{name: "500tps", job: appJob{Interval: 2 * time.Millisecond, For: 10 * time.Second}},
		{name: "bursts", job: appJob{Count: 60}, schedule: burstSchedule},
	} {
		b.Run(w.name, func(b *testing.B) {
			srv := s3Server(b)
			ls := litestreamPath(b)
			rounds, seed := lagRounds(b), lagSeed(b)
			var fe, lt lagTotals
			var walMiB float64
			for b.Loop() {
				for round := range rounds {
					runFerry := func() {
						db := newAppDB(b)
						r := startReplica(b, srv, db, capture.Options{SyncInterval: syncInterval})
						run := ferryLag(b, r, db, func(ctx context.Context) (*app, error) { return w.start(ctx, db, seed+round) }, &walMiB)
						if err := r.stop(); err != nil {
							b.Fatal(err)
						}
						fe.add(run)
						lagReport(b, "round %d ferry: %s", round+1, run)
						lagDump(b, w.name, "ferry", seed+round, run)
					}
					runLitestream := func() {
						if ls == "" {
							return
						}
						run := litestreamLag(b, ls, srv, func(ctx context.Context, db string) (*app, error) { return w.start(ctx, db, seed+round) })
						if run.lags == nil {
							lagReport(b, "round %d litestream: no figures", round+1)
							return
						}
						lt.add(run)
						lagReport(b, "round %d litestream: %s", round+1, run)
						lagDump(b, w.name, "litestream", seed+round, run)
					}
					if (seed+round)%2 == 0 {
						runFerry()
						runLitestream()
					} else {
						runLitestream()
						runFerry()
					}
				}
			}
			b.ReportMetric(ms(percentile(fe.lags, 50)), "p50-ms")
			b.ReportMetric(ms(percentile(fe.lags, 90)), "p90-ms")
			b.ReportMetric(ms(percentile(fe.lags, 99)), "p99-ms")
			b.ReportMetric(ms(percentile(fe.lags, 100)), "max-ms")
			b.ReportMetric(float64(fe.commits)/fe.took.Seconds(), "txn/s")
			b.ReportMetric(walMiB, "max-wal-MiB")
			b.ReportMetric(fe.perRound(fe.puts), "puts/round")
			lagReport(b, "ferry, %d rounds: %s", fe.rounds, fe.summary())
			if lt.rounds == 0 {
				return
			}
			lagReport(b, "litestream, %d rounds: %s", lt.rounds, lt.summary())
			b.ReportMetric(ms(percentile(lt.lags, 50)), "litestream-p50-ms")
			b.ReportMetric(ms(percentile(lt.lags, 90)), "litestream-p90-ms")
			b.ReportMetric(ms(percentile(lt.lags, 99)), "litestream-p99-ms")
			b.ReportMetric(lt.perRound(lt.puts), "litestream-puts/round")
			b.ReportMetric(lt.perRound(lt.allPuts), "litestream-all-puts/round")
			for _, p := range []float64{50, 90, 99} {
				b.ReportMetric(ms(percentile(fe.lags, p))/ms(percentile(lt.lags, p)), fmt.Sprintf("p%.0f-ratio", p))
			}
			b.ReportMetric(fe.perRound(fe.puts)/lt.perRound(lt.puts), "puts-ratio")
		})
	}
}

// lagReport prints a line of BenchmarkLag's figures on stderr, as they
// come: the benchmark's own log keeps only its first ten lines.
func lagReport(b *testing.B, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", b.Name(), fmt.Sprintf(format, args...))
}

// lagDump appends run, with every lag, as a JSON line to the file
// FERRY_BENCH_LAG_DUMP names, when it names one: the figures of several
// benchmark runs, of different builds taken in turns, can then be pooled.
func lagDump(b *testing.B, workload, side string, seed int, run lagRun) {
	path := os.Getenv("FERRY_BENCH_LAG_DUMP")
	if path == "" {
		return
	}
	lags := make([]float64, len(run.lags))
	for i, l := range run.lags {
		lags[i] = ms(l)
	}
	line, err := json.Marshal(map[string]any{
		"workload": workload, "side": side, "seed": seed, "commits": run.commits, "puts": run.puts, "all_puts": run.allPuts,
		"lags_ms": lags, "at": time.Now().UTC(),
	})
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		b.Fatal(err)
	}
}

// lagWorkload is one workload of BenchmarkLag: single-row commits paced
// by job (Interval, Count, For), or, when maxGap is set, job.Count
// commits at random gaps between minGap and maxGap, or, when schedule is
// set, job.Count commits at the offsets it draws.
type lagWorkload struct {
	name           string
	job            appJob
	minGap, maxGap time.Duration
	schedule       func(rng *mrand.Rand, n int) []time.Duration
}

// burstSchedule draws n commits in bursts of 2-8 commits 20-80 ms apart,
// separated by quiet gaps of 100 ms plus an exponentially distributed
// time of mean 1.4 s: an application that writes a few rows per request.
func burstSchedule(rng *mrand.Rand, n int) []time.Duration {
	var at []time.Duration
	var t time.Duration
	for len(at) < n {
		for range 2 + rng.IntN(7) {
			if len(at) == n {
				break
			}
			at = append(at, t)
			t += 20*time.Millisecond + time.Duration(rng.Int64N(int64(60*time.Millisecond)+1))
		}
		t += 100*time.Millisecond + time.Duration(rng.ExpFloat64()*float64(1400*time.Millisecond))
	}
	return at
}

// start starts the workload's application on db. The seed, the round's,
// draws the random gaps, so that ferry and Litestream get the same
// schedule in a round and different ones across rounds.
func (w lagWorkload) start(ctx context.Context, db string, seed int) (*app, error) {
	if w.maxGap == 0 && w.schedule == nil {
		job := w.job
		job.Do, job.DB, job.Report = "insert", db, true
		return startApp(ctx, job)
	}
	rng := mrand.New(mrand.NewPCG(uint64(seed), 0x6c6167))
	s := scheduleJob{DB: db}
	if w.schedule != nil {
		s.At = w.schedule(rng, w.job.Count)
		return startSchedule(ctx, s)
	}
	var at time.Duration
	for i := range w.job.Count {
		if i > 0 {
			at += w.minGap + time.Duration(rng.Int64N(int64(w.maxGap-w.minGap)+1))
		}
		s.At = append(s.At, at)
	}
	return startSchedule(ctx, s)
}

// lagRun is what one run of a lag workload measured.
type lagRun struct {
	lags    []time.Duration // one per commit, nil when not known
	commits int
	took    time.Duration // how long the application ran
	// puts counts the change sets uploaded while the workload ran, and
	// allPuts every object.
	puts, allPuts int64
}

func (r lagRun) String() string {
	return fmt.Sprintf("%d commits, lag p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms; %d change-set PUTs, %d PUTs in all",
		r.commits, ms(percentile(r.lags, 50)), ms(percentile(r.lags, 90)), ms(percentile(r.lags, 99)), ms(percentile(r.lags, 100)),
		r.puts, r.allPuts)
}

// lagTotals adds up the runs of one side.
type lagTotals struct {
	lagRun
	rounds int
}

func (t *lagTotals) add(r lagRun) {
	t.lags = append(t.lags, r.lags...)
	t.commits += r.commits
	t.took += r.took
	t.puts += r.puts
	t.allPuts += r.allPuts
	t.rounds++
}

func (t *lagTotals) perRound(n int64) float64 { return float64(n) / float64(max(t.rounds, 1)) }

func (t *lagTotals) summary() string {
	return fmt.Sprintf("%s; %.1f change-set PUTs a round", t.lagRun, t.perRound(t.puts))
}

// newAppDB creates the 1-row-insert workloads' database, an empty table
// in WAL mode, in a new directory.
func newAppDB(b *testing.B) string {
	db := filepath.Join(b.TempDir(), "app.db")
	runApp(b, appJob{Do: "create", DB: db})
	return db
}

// ferryLag runs the application start starts against r's database, db, and
// returns the lag of every commit, the number of commits, how long the
// application took and the change sets r uploaded meanwhile. It raises
// walMiB to the log's size when the application stopped.
func ferryLag(b *testing.B, r *replica, db string, start func(context.Context) (*app, error), walMiB *float64) lagRun {
	b.Helper()
	base := r.Status().TXID
	before := r.store.counts()
	// Ending the context kills the application if the benchmark fails
	// while it runs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := start(ctx)
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
	if fi, err := os.Stat(db + "-wal"); err == nil {
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
	u := since(before, r.store.counts())
	run := lagRun{commits: n, took: took, puts: u.byOp["segments/put"]}
	for op, c := range u.byOp {
		if strings.HasSuffix(op, "/put") {
			run.allPuts += c
		}
	}
	mu.Lock()
	defer mu.Unlock()
	run.lags = lags
	return run
}

// scheduleEnv carries a scheduleJob to the test binary re-executed as
// the application.
const scheduleEnv = "FERRY_BENCH_SCHEDULE"

// scheduleJob is an application that commits single-row inserts, as the
// "insert" appJob does and reporting them the same way, at the given
// offsets from its start.
type scheduleJob struct {
	DB string
	At []time.Duration
}

// scheduleMain runs the scheduleJob in env and exits.
func scheduleMain(env string) {
	var job scheduleJob
	err := json.Unmarshal([]byte(env), &job)
	if err == nil {
		err = job.run(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func (j scheduleJob) run(out io.Writer) error {
	db, err := openApp(j.DB)
	if err != nil {
		return err
	}
	defer db.Close()
	stmt, err := db.Prepare("INSERT INTO t(v) VALUES(?)")
	if err != nil {
		return err
	}
	defer stmt.Close()
	w := bufio.NewWriter(out)
	v := make([]byte, rowBytes)
	start := time.Now()
	for i, at := range j.At {
		time.Sleep(time.Until(start.Add(at)))
		rand.Read(v)
		if _, err := stmt.Exec(v); err != nil {
			return fmt.Errorf("insert %d: %w", i+1, err)
		}
		fmt.Fprintf(w, "commit %d %d %x\n", i+1, time.Now().UnixNano(), v[:markerLen])
		if err := w.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "done %d %d\n", len(j.At), time.Since(start).Nanoseconds())
	return w.Flush()
}

// startSchedule starts the application on job, as startApp does an
// appJob.
func startSchedule(ctx context.Context, job scheduleJob) (*app, error) {
	return startSelf(ctx, scheduleEnv, job, "application (schedule)")
}

// The bursts workload's schedule: n commits in time order, in runs of at
// most eight 20-80 ms apart, separated by longer gaps.
func TestBurstSchedule(t *testing.T) {
	for seed := range uint64(20) {
		at := burstSchedule(mrand.New(mrand.NewPCG(seed, 1)), 60)
		if len(at) != 60 || at[0] != 0 {
			t.Fatalf("seed %d: %d commits from %v", seed, len(at), at[0])
		}
		run, bursts := 1, 1
		for i := 1; i < len(at); i++ {
			switch gap := at[i] - at[i-1]; {
			case gap < 20*time.Millisecond:
				t.Fatalf("seed %d: commits %d and %d %v apart", seed, i-1, i, gap)
			case gap <= 80*time.Millisecond:
				run++
			default:
				run, bursts = 1, bursts+1
			}
			if run > 8 {
				t.Fatalf("seed %d: a burst of %d commits", seed, run)
			}
		}
		if bursts < 60/9 || bursts > 30 {
			t.Errorf("seed %d: %d bursts of 60 commits", seed, bursts)
		}
	}
}
