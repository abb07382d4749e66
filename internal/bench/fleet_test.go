package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/testenv"
)

// BenchmarkFleet runs the real `ferry replicate -config` binary, as a
// child process, on one dir entry (watch: true) of FERRY_BENCH_DBS
// SQLite databases in WAL mode (default 1000; 10000 is the big form),
// each a copy of one small template, replicated to one bucket of the
// real S3 server through a proxy that counts every request outside the
// ferry process (to a file:// replica, with no count, when no server is
// set). It reports:
//
//   - ready_s, startup_s: from exec until GET /status first answers, and
//     until every database has a snapshot (every target's
//     replicated_txid above 0);
//   - rss_mb, fds, threads: peaks of the child's VmRSS, open descriptors
//     and threads, sampled every 500 ms over an idle window
//     (FERRY_BENCH_IDLE_FOR, default 60s) that starts once every database
//     is idle; startup_rss_mb is the peak until then, idle_rss_end_mb
//     the VmRSS as the window ends;
//   - idle_cpu_pct: the child's user and system time over the window, as
//     a percentage of one core; idle_requests_per_hour: the requests the
//     proxy saw in it, scaled to an hour;
//   - stop_s, restart_s: SIGTERM to exit, then from exec of a new daemon
//     on the same directories until /status lists every database idle;
//   - write_*: 1% of the databases (at least one) take an insert every
//     200 ms for 20 s from the benchmark process; lag_peak_s is the
//     highest lag_seconds /status reported for them (sampled every
//     second), p50_ms and p99_ms the time from each commit returning to
//     the server acknowledging, through the proxy, the first change set
//     or snapshot that carries it, rss_mb and cpu_pct the child's over
//     the phase;
//   - alone_*: the same writer on one database alone, in a dir entry of
//     its own, run by the same binary after the fleet: the baseline the
//     write_* figures compare with.
//
// With a litestream binary on PATH (v0.5, which replicates dir entries),
// it runs on the same directory, to a bucket of its own through the same
// kind of proxy, and the same figures are reported with an ls_ prefix
// where Litestream has an equivalent: startup_s (until every database
// has an object in the bucket), the idle window's, and the write phase's
// rss and cpu (it has no status to time a commit's arrival with).
//
//	go test -run '^$' -bench BenchmarkFleet -benchtime 1x ./internal/bench/
//	FERRY_BENCH_DBS=10000 FERRY_BENCH_IDLE_FOR=30s go test -run '^$' -bench BenchmarkFleet -benchtime 1x -timeout 60m ./internal/bench/
func BenchmarkFleet(b *testing.B) {
	n := fleetSize(b)
	window := fleetIdleFor(b)
	bin := buildFerry(b)
	var m map[string]float64
	for b.Loop() {
		m = fleetRound(b, bin, n, window)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b.ReportMetric(m[k], k)
	}
}

func fleetSize(b *testing.B) int {
	s := os.Getenv("FERRY_BENCH_DBS")
	if s == "" {
		return 1000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("FERRY_BENCH_DBS=%q: want a count of databases", s)
	}
	return n
}

// fleetIdleFor is the idle window; FERRY_BENCH_IDLE_FOR sets it, as for
// BenchmarkIdleRequests, but a fleet's default is longer: its databases'
// periodic looks come every 10 s.
func fleetIdleFor(b *testing.B) time.Duration {
	if os.Getenv("FERRY_BENCH_IDLE_FOR") == "" {
		return time.Minute
	}
	return idleFor(b)
}

// buildFerry builds the ferry command into a temporary directory.
func buildFerry(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "ferry")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/ferrydb/ferry/cmd/ferry").CombinedOutput()
	if err != nil {
		b.Fatalf("go build ferry: %v\n%s", err, out)
	}
	return bin
}

// fleetRound runs every phase once and returns the figures.
func fleetRound(b *testing.B, bin string, n int, window time.Duration) map[string]float64 {
	m := map[string]float64{}
	root := b.TempDir()
	tmpl := templateDB(b, root)
	dir := filepath.Join(root, "tenants")
	dbs := copies(b, tmpl, dir, n)
	dest := newDestination(b, "fleet")
	addr := freePort(b)
	cfg := fleetConfig(b, root, "ferry.yml", addr, filepath.Join(root, "spool"), dir, dest.url)

	f := startChild(b, "ferry", dest.env, bin, "-log-level", "info", "replicate", "-config", cfg)
	ready, startup := waitSnapshots(b, f, addr, n)
	m["ready_s"], m["startup_s"] = ready.Seconds(), startup.Seconds()
	b.Logf("ferry: /status answered after %s, every one of %d databases had a snapshot after %s", ready, n, startup)
	waitAllIdle(b, f, addr, n, 5*time.Minute)
	m["startup_rss_mb"] = f.watch.peak().rssMB
	idle := idleWindow(b, f, dest.proxy, window)
	m["rss_mb"], m["fds"], m["threads"] = idle.peak.rssMB, float64(idle.peak.fds), float64(idle.peak.threads)
	m["idle_rss_end_mb"], m["idle_cpu_pct"] = idle.endRSSMB, idle.cpuPct
	if dest.proxy != nil {
		m["idle_requests_per_hour"] = idle.requestsPerHour
	}
	if rep, err := fleetStatus(addr, ""); err == nil {
		if busy := notIdle(rep); len(busy) > 0 {
			b.Logf("ferry: %d databases were not idle at the end of the idle window, such as %v", len(busy), busy[:min(len(busy), 3)])
		}
	}
	m["stop_s"] = f.stop(b).Seconds()

	f = startChild(b, "ferry", dest.env, bin, "-log-level", "info", "replicate", "-config", cfg)
	m["restart_s"] = waitAllIdle(b, f, addr, n, 5*time.Minute).Seconds()
	writers := writerDBs(dbs)
	w := writePhase(b, f, addr, dest.proxy, writers)
	m["write_lag_peak_s"], m["write_p50_ms"], m["write_p99_ms"] = w.lagPeak, ms(w.p50), ms(w.p99)
	m["write_rss_mb"], m["write_cpu_pct"] = w.peak.rssMB, w.cpuPct
	b.Logf("ferry: %d writers among %d databases: lag p50 %s, p99 %s, peak lag_seconds %.2f", len(writers), n, w.p50, w.p99, w.lagPeak)
	f.stop(b)

	aloneDir := filepath.Join(root, "alone")
	alone := copies(b, tmpl, aloneDir, 1)
	aloneDest := newDestination(b, "alone")
	aloneAddr := freePort(b)
	aloneCfg := fleetConfig(b, root, "alone.yml", aloneAddr, filepath.Join(root, "spool-alone"), aloneDir, aloneDest.url)
	a := startChild(b, "ferry", aloneDest.env, bin, "-log-level", "info", "replicate", "-config", aloneCfg)
	waitSnapshots(b, a, aloneAddr, 1)
	waitAllIdle(b, a, aloneAddr, 1, 5*time.Minute)
	w = writePhase(b, a, aloneAddr, aloneDest.proxy, alone)
	m["alone_lag_peak_s"], m["alone_p50_ms"], m["alone_p99_ms"] = w.lagPeak, ms(w.p50), ms(w.p99)
	m["alone_rss_mb"], m["alone_cpu_pct"] = w.peak.rssMB, w.cpuPct
	b.Logf("ferry: one writer alone: lag p50 %s, p99 %s, peak lag_seconds %.2f", w.p50, w.p99, w.lagPeak)
	a.stop(b)

	if ls := litestreamPath(b); ls != "" {
		if dest.proxy == nil {
			b.Logf("litestream: skipped, since it is compared on the S3 server alone")
		} else {
			lm := litestreamFleet(b, ls, dir, n, window, writers)
			for k, v := range lm {
				m["ls_"+k] = v
			}
		}
	}
	return m
}

// templateDB creates the database every member of the fleet copies: a
// small table with a few rows, in WAL mode, its log checkpointed into
// it and removed, so that a copy of the file alone is whole.
func templateDB(b *testing.B, dir string) []byte {
	b.Helper()
	path := filepath.Join(dir, "template.db")
	db, err := openApp(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
		"INSERT INTO t(v) VALUES ('one'), ('two'), ('three'), ('four'), ('five')",
		"PRAGMA wal_checkpoint(TRUNCATE)",
	} {
		if _, err := db.Exec(q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	// The header's read and write versions say WAL mode, whatever the
	// log: a copy opens in WAL mode with no -wal file beside it.
	if len(data) < 100 || data[18] != 2 || data[19] != 2 {
		b.Fatalf("the template %s is not in WAL mode", path)
	}
	return data
}

// copies writes n copies of the template into dir and returns their
// paths.
func copies(b *testing.B, tmpl []byte, dir string, n int) []string {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("tenant-%05d.db", i))
		if err := os.WriteFile(paths[i], tmpl, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return paths
}

// writerDBs picks 1% of dbs, at least one, spread over the directory.
func writerDBs(dbs []string) []string {
	k := max(1, len(dbs)/100)
	var out []string
	for i := 0; i < k; i++ {
		out = append(out, dbs[i*len(dbs)/k])
	}
	return out
}

// destination is where a daemon replicates to: a prefix of a new bucket
// on the real S3 server behind a counting proxy, or a file:// directory.
type destination struct {
	url   string
	env   []string
	proxy *requestCounter
}

func newDestination(b *testing.B, prefix string) destination {
	b.Helper()
	env := append(withoutAWS(os.Environ()), "AWS_EC2_METADATA_DISABLED=true")
	if os.Getenv("FERRY_TEST_S3_ENDPOINT") == "" {
		b.Logf("no S3 server (FERRY_TEST_S3_ENDPOINT); replicating to file://, and no requests are counted")
		return destination{url: "file://" + filepath.Join(b.TempDir(), prefix), env: env}
	}
	srv := s3Server(b)
	p := newRequestCounter(b, srv.Endpoint)
	return destination{
		url: fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&force-path-style=true",
			testenv.Bucket(b, srv), prefix, p.URL, srv.Region),
		env:   append(env, "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey),
		proxy: p,
	}
}

func fleetConfig(b *testing.B, dir, name, addr, spool, dbDir, replica string) string {
	b.Helper()
	path := filepath.Join(dir, name)
	yml := fmt.Sprintf("addr: %s\nspool: %s\ndbs:\n  - dir: %s\n    watch: true\n    replicas: [%q]\n", addr, spool, dbDir, replica)
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// freePort returns a loopback address nothing listens on.
func freePort(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// fleetStatus asks a daemon's HTTP server for its status, of every
// database or, with db, of that one.
func fleetStatus(addr, db string) (daemon.StatusReport, error) {
	var rep daemon.StatusReport
	u := "http://" + addr + "/status"
	if db != "" {
		u += "?db=" + url.QueryEscape(db)
	}
	resp, err := statusClient.Get(u)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return rep, json.NewDecoder(resp.Body).Decode(&rep)
}

var statusClient = &http.Client{Timeout: time.Minute}

// waitSnapshots polls /status from the child's start until it answers
// (ready) and until each of n databases has a snapshot on every target
// (startup).
func waitSnapshots(b *testing.B, c *child, addr string, n int) (ready, startup time.Duration) {
	b.Helper()
	deadline := c.started.Add(max(5*time.Minute, time.Duration(n)*200*time.Millisecond))
	for {
		rep, err := fleetStatus(addr, "")
		if err == nil {
			if ready == 0 {
				ready = time.Since(c.started)
			}
			if snapshotted(rep) == n {
				return ready, time.Since(c.started)
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d databases had a snapshot after %s (last error %v)\n%s",
				c.name, snapshotted(rep), n, time.Since(c.started), err, c.tail(40))
		}
		c.alive(b)
		if ready == 0 {
			time.Sleep(20 * time.Millisecond)
		} else {
			time.Sleep(statusEvery(n, 250*time.Millisecond))
		}
	}
}

// statusEvery spaces the questions for a status of all n databases
// once the daemon answers: each costs it more to encode the larger the
// fleet, and asking too often would slow down what is measured. A
// tenth of a millisecond a database keeps a status of 10,000 to one a
// second.
func statusEvery(n int, least time.Duration) time.Duration {
	return max(least, time.Duration(n)*100*time.Microsecond)
}

func snapshotted(rep daemon.StatusReport) int {
	k := 0
	for _, db := range rep.DBs {
		ok := len(db.Targets) > 0
		for _, t := range db.Targets {
			ok = ok && t.Replicated > 0
		}
		if ok {
			k++
		}
	}
	return k
}

func notIdle(rep daemon.StatusReport) []string {
	var out []string
	for _, db := range rep.DBs {
		if db.State != "idle" {
			out = append(out, db.DB+" "+db.State)
		}
	}
	return out
}

// waitAllIdle polls /status until it lists n databases, every one idle,
// and returns the time since the child started. A fleet that never goes
// idle is the failure this benchmark exists to show: it ends the
// benchmark with the states and the daemon's log.
func waitAllIdle(b *testing.B, c *child, addr string, n int, limit time.Duration) time.Duration {
	b.Helper()
	deadline := time.Now().Add(limit)
	for {
		rep, err := fleetStatus(addr, "")
		if err == nil && len(rep.DBs) == n && len(notIdle(rep)) == 0 {
			return time.Since(c.started)
		}
		if time.Now().After(deadline) {
			busy := notIdle(rep)
			b.Fatalf("%s: not every database went idle within %s: %d listed of %d, %d not idle, such as %v (error %v)\n%s",
				c.name, limit, len(rep.DBs), n, len(busy), busy[:min(len(busy), 5)], err, c.tail(40))
		}
		c.alive(b)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		} else {
			time.Sleep(statusEvery(n, 50*time.Millisecond))
		}
	}
}

// idleFigures is what an idle window measured.
type idleFigures struct {
	peak procPeak
	// endRSSMB is the resident set as the window ends: the Go runtime
	// returns memory freed since its last collection only after the
	// next one, which an idle process, allocating nothing, may start
	// only when its two-minute timer forces one.
	endRSSMB        float64
	cpuPct          float64
	requestsPerHour float64
}

// idleWindow measures the child over window, in which nothing writes.
func idleWindow(b *testing.B, c *child, p *requestCounter, window time.Duration) idleFigures {
	b.Helper()
	var before map[string]int64
	if p != nil {
		before = p.counts()
	}
	c.watch.reset()
	cpu0 := childCPU(b, c.pid())
	start := time.Now()
	time.Sleep(window)
	took := time.Since(start)
	fig := idleFigures{peak: c.watch.peak(), endRSSMB: c.watch.now().rssMB, cpuPct: 100 * float64(childCPU(b, c.pid())-cpu0) / float64(took)}
	if p != nil {
		by := p.since(before)
		fig.requestsPerHour = float64(total(by)) * float64(time.Hour) / float64(took)
		b.Logf("%s: idle for %s: %d requests %v", c.name, took.Round(time.Second), total(by), by)
	}
	b.Logf("%s: idle for %s: RSS peak %.1f MiB, %.1f MiB at the end; %d fds, %d threads, CPU %.2f%% of a core",
		c.name, took.Round(time.Second), fig.peak.rssMB, fig.endRSSMB, fig.peak.fds, fig.peak.threads, fig.cpuPct)
	c.alive(b)
	return fig
}

// tenantName finds a fleet database's name in a key of Litestream's, in
// whatever layout its dir entries give the databases' replicas.
var tenantName = regexp.MustCompile(`tenant-\d+\.db`)

// litestreamFleet runs litestream on the fleet's directory, to a bucket
// of its own through a counting proxy, and measures what it has in
// common with ferry: the time until every database has an object in the
// bucket, an idle window, and the write phase's memory and CPU.
func litestreamFleet(b *testing.B, bin, dir string, n int, window time.Duration, writers []string) map[string]float64 {
	b.Helper()
	m := map[string]float64{}
	srv := s3Server(b)
	bucket := testenv.Bucket(b, srv)
	p := newRequestCounter(b, srv.Endpoint)
	conf := filepath.Join(b.TempDir(), "litestream.yml")
	// As shipped, but for the sync interval, set to ferry's, as in the
	// other side-by-side benchmarks.
	yml := fmt.Sprintf(`dbs:
  - dir: %s
    pattern: "*.db"
    watch: true
    replica:
      type: s3
      bucket: %s
      path: bench
      endpoint: %s
      region: %s
      force-path-style: true
      sync-interval: %s
`, dir, bucket, p.URL, srv.Region, syncInterval)
	if err := os.WriteFile(conf, []byte(yml), 0o600); err != nil {
		b.Fatal(err)
	}
	env := append(withoutAWS(os.Environ()), "AWS_ACCESS_KEY_ID="+srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_EC2_METADATA_DISABLED=true")
	l := startChild(b, "litestream", env, bin, "replicate", "-config", conf)
	l.sig = os.Interrupt
	store := bucketStore(b, srv, bucket)
	deadline := time.Now().Add(max(5*time.Minute, time.Duration(n)*200*time.Millisecond))
	for {
		got := map[string]bool{}
		for info, err := range store.List(context.Background(), "") {
			if err != nil {
				b.Fatal(err)
			}
			if name := tenantName.FindString(info.Key); name != "" {
				got[name] = true
			}
		}
		if len(got) >= n {
			break
		}
		if time.Now().After(deadline) {
			b.Logf("litestream: %d of %d databases had an object in the bucket after %s; no comparison\n%s",
				len(got), n, time.Since(l.started), l.tail(20))
			l.stop(b)
			return m
		}
		l.alive(b)
		time.Sleep(time.Second)
	}
	m["startup_s"] = time.Since(l.started).Seconds()
	m["startup_rss_mb"] = l.watch.peak().rssMB
	// Litestream has no idle state to wait for; its first round of
	// uploads is given time to end.
	time.Sleep(15 * time.Second)
	idle := idleWindow(b, l, p, window)
	m["rss_mb"], m["fds"], m["threads"] = idle.peak.rssMB, float64(idle.peak.fds), float64(idle.peak.threads)
	m["idle_rss_end_mb"], m["idle_cpu_pct"], m["idle_requests_per_hour"] = idle.endRSSMB, idle.cpuPct, idle.requestsPerHour
	// Litestream reports no position to time a commit's arrival with.
	w := writePhase(b, l, "", nil, writers)
	m["write_rss_mb"], m["write_cpu_pct"] = w.peak.rssMB, w.cpuPct
	b.Logf("litestream: every database had an object after %.1fs; idle RSS %.1f MiB, %d fds, %d threads, CPU %.2f%%",
		m["startup_s"], idle.peak.rssMB, idle.peak.fds, idle.peak.threads, idle.cpuPct)
	l.stop(b)
	return m
}
