package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
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
	cmd    *exec.Cmd
	out    bytes.Buffer
	done   chan error
	bucket string
}

// startLitestream replicates db to a new bucket on srv, through endpoint
// (srv's own, or a proxy in front of it), and returns once litestream has
// stored its first object there.
func startLitestream(b *testing.B, bin string, srv testenv.S3Server, db, endpoint string) *litestream {
	b.Helper()
	l := &litestream{bucket: testenv.Bucket(b, srv), done: make(chan error, 1)}
	conf := filepath.Join(b.TempDir(), "litestream.yml")
	yml := fmt.Sprintf(`dbs:
  - path: %s
    replicas:
      - type: s3
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
	l.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true")
	l.cmd.Stdout, l.cmd.Stderr = &l.out, &l.out
	if err := l.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { l.done <- l.cmd.Wait() }()
	b.Cleanup(func() { l.stop() })
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

// stop ends litestream the way its service manager would.
func (l *litestream) stop() {
	if l.cmd.ProcessState != nil {
		return
	}
	_ = l.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-l.done:
		l.done <- err
	case <-time.After(30 * time.Second):
		_ = l.cmd.Process.Kill()
	}
}

// litestreamTPS runs the insert workload for d on a database litestream
// replicates and returns its rate.
func litestreamTPS(b *testing.B, bin string, srv testenv.S3Server, d time.Duration) float64 {
	b.Helper()
	db := newAppDB(b)
	l := startLitestream(b, bin, srv, db, srv.Endpoint)
	tps, _ := insertFor(b, db, d)
	l.stop()
	return tps
}

// litestreamLag runs job on a database litestream replicates and returns
// the lag of every commit, nil when it cannot tell.
//
// Litestream's own positions (LTX txids) count its syncs, not the
// application's commits, so its lag is observed on the wire instead:
// litestream talks to versitygw through a proxy that, when a PUT
// succeeds, looks in its body for the random bytes each commit wrote.
// LTX pages are LZ4-compressed at most, which copies random bytes through
// as literals. A commit is durable when the response of the first PUT
// carrying it is sent back, the same instant ferry's uploader would
// count it.
func litestreamLag(b *testing.B, bin string, srv testenv.S3Server, job appJob) []time.Duration {
	b.Helper()
	w := &wireWatch{pending: map[string]time.Time{}}
	up, err := url.Parse(srv.Endpoint)
	if err != nil {
		b.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(up)
	front := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
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
			w.put(body, time.Now())
		}
	}))
	defer front.Close()

	db := newAppDB(b)
	l := startLitestream(b, bin, srv, db, front.URL)
	defer l.stop()
	job.DB = db
	// Ending the context kills the application if the benchmark fails
	// while it runs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := startApp(ctx, job)
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
	n, _, err := parseDone(last)
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for w.seen() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := w.seen(); got < n {
		b.Logf("litestream: only %d of %d commits were found in its uploads; no lag comparison", got, n)
		return nil
	}
	return w.lagList()
}

// wireWatch matches commits to the uploads that carry them.
type wireWatch struct {
	mu      sync.Mutex
	pending map[string]time.Time // marker -> commit time
	lags    []time.Duration
}

func (w *wireWatch) commit(c commitLine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending[string(c.marker)] = c.at
}

// put checks a successful upload's body for pending commits. A commit
// whose line arrives after its upload was sent would be missed here and
// found in a later upload; at worst that overstates litestream's lag
// (the application prints the line as soon as COMMIT returns).
func (w *wireWatch) put(body []byte, at time.Time) {
	s := string(body)
	w.mu.Lock()
	defer w.mu.Unlock()
	for m, t := range w.pending {
		if strings.Contains(s, m) {
			w.lags = append(w.lags, at.Sub(t))
			delete(w.pending, m)
		}
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
