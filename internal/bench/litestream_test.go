package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	pathpkg "path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/testenv"
)

// litestreamPath returns the litestream binary on PATH, or "" after
// saying that the comparison is skipped.
func litestreamPath(b *testing.B) string {
	p, err := exec.LookPath("litestream")
	if err != nil {
		b.Logf("litestream was not found on PATH; the side-by-side comparison is skipped " +
			"(go install github.com/benbjohnson/litestream/cmd/litestream@v0.5.18 provides it)")
		return ""
	}
	return p
}

// litestream is a `litestream replicate` process replicating one
// database to a new bucket.
type litestream struct {
	cmd     *exec.Cmd
	out     testenv.LogBuffer
	done    chan error
	stopped bool
	bucket  string
}

// startLitestream replicates db to a new bucket on srv, through endpoint
// (srv's own, or a proxy in front of it), and returns once litestream has
// stored its first object there.
func startLitestream(b *testing.B, bin string, srv testenv.S3Server, db, endpoint string) *litestream {
	b.Helper()
	l := &litestream{bucket: testenv.Bucket(b, srv), done: make(chan error, 1)}
	conf := filepath.Join(b.TempDir(), "litestream.yml")
	// Litestream runs as shipped but for the sync interval, set to
	// ferry's. Its monitor interval, how often it reads the WAL into
	// staged LTX files, stays at its default of 1s, as its users run it.
	yml := fmt.Sprintf(`dbs:
  - path: %s
    replica:
      type: s3
      bucket: %s
      path: bench
      endpoint: %s
      region: %s
      force-path-style: true
      sync-interval: %s
`, db, l.bucket, endpoint, srv.Region, syncInterval)
	if err := os.WriteFile(conf, []byte(yml), 0o600); err != nil {
		b.Fatal(err)
	}
	l.cmd = exec.Command(bin, "replicate", "-config", conf)
	l.cmd.Env = append(withoutAWS(os.Environ()), "AWS_ACCESS_KEY_ID="+srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_EC2_METADATA_DISABLED=true")
	l.cmd.Stdout, l.cmd.Stderr = &l.out, &l.out
	if err := l.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { l.done <- l.cmd.Wait() }()
	// A litestream that fell behind or failed would make its figures
	// look better or worse than it is; what it complained of is shown
	// beside them.
	b.Cleanup(func() {
		l.stop()
		for line := range strings.Lines(l.out.String()) {
			if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
				b.Logf("litestream: %s", strings.TrimSpace(line))
			}
		}
	})
	store := bucketStore(b, srv, l.bucket)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var n int
		for _, err := range store.List(context.Background(), "") {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n > 0 {
			return l
		}
		select {
		case err := <-l.done:
			l.done <- err
			b.Fatalf("litestream exited before storing anything: %v: %s", err, l.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatalf("litestream stored nothing in 2 minutes: %s", l.out.String())
		}
	}
}

// withoutAWS drops the AWS_* variables from env, so that litestream
// sees only the server's credentials. AWS_CA_BUNDLE in particular makes
// v0.5.18 refuse to start ("unable to add custom RootCAs HTTPClient"):
// it hands the SDK an http.Client the SDK cannot add a CA pool to, even
// for a plain-HTTP endpoint such as versitygw's.
func withoutAWS(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "AWS_") {
			out = append(out, kv)
		}
	}
	return out
}

// stop ends litestream the way its service manager would, and waits
// for it to exit.
func (l *litestream) stop() {
	if l.stopped {
		return
	}
	l.stopped = true
	_ = l.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-l.done:
		l.done <- err
	case <-time.After(30 * time.Second):
		_ = l.cmd.Process.Kill()
		l.done <- <-l.done
	}
}

// litestreamTPS runs the insert workload for d on a database litestream
// replicates and returns its rate.
func litestreamTPS(b *testing.B, bin string, srv testenv.S3Server, d time.Duration) float64 {
	b.Helper()
	db := newAppDB(b)
	l := startLitestream(b, bin, srv, db, srv.Endpoint)
	tps, _ := insertFor(b, db, d)
	logWAL(b, db)
	l.stop()
	return tps
}

// logWAL logs the size of db's log, the figure ferry reports as
// max-wal-MiB, for litestream: how far each lets the log grow is part of
// what it costs the application.
func logWAL(b *testing.B, db string) {
	b.Helper()
	if fi, err := os.Stat(db + "-wal"); err == nil {
		b.Logf("litestream: the log was %.2f MiB when the writer stopped", float64(fi.Size())/(1<<20))
	}
}

// litestreamLag runs the application start starts on a new database
// litestream replicates, and returns the lag of every commit (nil when it
// cannot tell) and the PUTs litestream made while the workload ran.
//
// Litestream's own positions (LTX txids) count its syncs, not the
// application's commits, and its logs say what it meant to do, not what
// the store holds, so its lag is observed on the wire instead: litestream
// talks to versitygw through a proxy that, when the server acknowledges a
// PUT, looks in its body for the random bytes each commit wrote. An LTX
// file holds whole pages, each at most LZ4-compressed, which copies
// random bytes through as literals. Litestream uploads its level-0 files
// in txid order, each with one PUT, and restores from them, so a commit
// is restorable from the moment versitygw answers the first PUT that
// carries it: the instant ferry's uploader counts a change set stored.
// The same proxy counts the PUTs: those of level-0 files (see isLevel0),
// its change sets, and every other.
func litestreamLag(b *testing.B, bin string, srv testenv.S3Server, start func(ctx context.Context, db string) (*app, error)) lagRun {
	b.Helper()
	w := &wireWatch{pending: map[string]time.Time{}}
	up, err := url.Parse(srv.Endpoint)
	if err != nil {
		b.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(up)
	// Litestream cancels its requests in flight when it is stopped; any
	// other failure is the proxy's, it slows litestream down, and so it
	// is shown beside the figures.
	proxy.ErrorHandler = func(rw http.ResponseWriter, r *http.Request, err error) {
		if r.Context().Err() == nil {
			b.Logf("litestream proxy: %s %s: %v", r.Method, r.URL.Path, err)
		}
		rw.WriteHeader(http.StatusBadGateway)
	}
	front := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		// A part of a multipart upload is not an object yet; litestream
		// uses one only past 5 MiB, which these workloads' files are not.
		if r.Method != http.MethodPut || r.URL.Query().Has("uploadId") {
			proxy.ServeHTTP(rw, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadGateway)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &statusWriter{ResponseWriter: rw, status: http.StatusOK}
		proxy.ServeHTTP(sw, r)
		if sw.status/100 == 2 {
			w.put(r.URL.Path, body, time.Now())
		}
	}))
	defer front.Close()

	db := newAppDB(b)
	l := startLitestream(b, bin, srv, db, front.URL)
	defer l.stop()
	// What litestream uploads as it starts is not the workload's.
	w.settle(time.Second, 30*time.Second)
	// Settling ends a fixed time after one of litestream's ticks; an
	// application's commits come at any point of its interval. Starting
	// right away would put every workload's first commit at the same
	// phase of the ticker, which decides, for a workload of a few
	// intervals, both that commit's wait and how many uploads the
	// workload costs.
	time.Sleep(mrand.N(syncInterval))
	puts, allPuts := w.putCounts()
	// Ending the context kills the application if the benchmark fails
	// while it runs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := start(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	var last string
	for line := range a.lines {
		last = line
		if c, err := parseCommit(line); err == nil {
			w.commit(c)
		}
	}
	if err := <-a.done; err != nil {
		b.Fatal(err)
	}
	logWAL(b, db)
	n, took, err := parseDone(last)
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for w.seen() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	run := lagRun{commits: n, took: took}
	p, ap := w.putCounts()
	run.puts, run.allPuts = p-puts, ap-allPuts
	if got := w.seen(); got < n {
		b.Logf("litestream: only %d of %d commits were found in its uploads; no lag comparison", got, n)
		return run
	}
	run.lags = w.lagList()
	return run
}

// wireWatch matches commits to the uploads that carry them. It keeps
// every upload, so that a commit whose line reaches the benchmark after
// the upload carrying it was acknowledged is still matched to that
// upload, not to a later one or to none.
type wireWatch struct {
	mu      sync.Mutex
	puts    []wirePut
	pending map[string]time.Time // marker -> commit time
	lags    []time.Duration
	// level0 counts the PUTs of level-0 LTX files, all every PUT, and
	// lastPut is when the last was acknowledged.
	level0, all int64
	lastPut     time.Time
}

// wirePut is one upload the store acknowledged.
type wirePut struct {
	body string
	at   time.Time
}

func (w *wireWatch) commit(c commitLine) {
	m := string(c.marker)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.puts {
		if strings.Contains(p.body, m) {
			w.lags = append(w.lags, p.at.Sub(c.at))
			return
		}
	}
	w.pending[m] = c.at
}

// put records an upload to path the store acknowledged at at.
func (w *wireWatch) put(path string, body []byte, at time.Time) {
	s := string(body)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all++
	if isLevel0(path) {
		w.level0++
	}
	w.lastPut = at
	w.puts = append(w.puts, wirePut{s, at})
	for m, t := range w.pending {
		if strings.Contains(s, m) {
			w.lags = append(w.lags, at.Sub(t))
			delete(w.pending, m)
		}
	}
}

// isLevel0 reports whether path, of a PUT, names a level-0 LTX file:
// litestream's S3 client stores level L's files under PATH/LLLL/, as
// 0000/0000000000000002-0000000000000002.ltx for level 0.
func isLevel0(path string) bool {
	dir, file := pathpkg.Split(path)
	return strings.HasSuffix(dir, "/0000/") && strings.HasSuffix(file, ".ltx")
}

// putCounts returns the PUTs of level-0 files and of anything so far.
func (w *wireWatch) putCounts() (level0, all int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.level0, w.all
}

// settle waits until no PUT was acknowledged for quiet, or for at most
// limit.
func (w *wireWatch) settle(quiet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		last := w.lastPut
		w.mu.Unlock()
		if time.Since(last) >= quiet {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *wireWatch) seen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lags)
}

func (w *wireWatch) lagList() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.lags...)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
