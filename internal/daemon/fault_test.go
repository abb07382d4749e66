package daemon_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/s3store"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// faultRig runs the daemon on one inbox whose replica sits behind a
// Toxiproxy in front of the real S3 server.
type faultRig struct {
	t      *testing.T
	inbox  string
	store  objstore.Store // direct, not through the proxy
	reg    *prometheus.Registry
	want   map[string][]byte
	spool  string
	log    *logWatch
	cancel context.CancelFunc
	done   chan error
}

func newFaultRig(t *testing.T, proxy *testenv.Proxy, srv testenv.S3Server) *faultRig {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	// The test's own requests, those that make the bucket and those that
	// check what arrived, go straight to the server on an HTTP client
	// whose idle connections are closed at the end, so that none of its
	// keep-alive connections outlives the test for goleak to find. The
	// daemon's go through the proxy, which closes them when it stops.
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(hc.CloseIdleConnections)
	bucket := fmt.Sprintf("ferry-fault-%d", time.Now().UnixNano())
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(srv.Endpoint),
		Region:       srv.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
		HTTPClient:   hc,
	})
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket %s on %s: %v", bucket, srv.Endpoint, err)
	}
	viaProxy := fmt.Sprintf("s3://%s/up?endpoint=%s&region=us-east-1&force-path-style=true", bucket, proxy.URL())
	store, err := s3store.New(context.Background(), s3store.Config{
		Bucket: bucket, Prefix: "up", Endpoint: srv.Endpoint, Region: srv.Region, ForcePathStyle: true,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey, HTTPClient: hc,
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &faultRig{t: t, inbox: filepath.Join(dir, "inbox"), store: store, reg: prometheus.NewRegistry(),
		want: map[string][]byte{}, spool: filepath.Join(dir, "spool"), log: &logWatch{}, done: make(chan error, 1)}
	os.Mkdir(r.inbox, 0o755)
	tgt, err := config.ParseURL(viaProxy)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Source: "test", Files: []config.Inbox{{Path: r.inbox, Replica: config.Replica{Target: tgt}}}}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	ready := make(chan struct{})
	go func() {
		r.done <- daemon.Run(ctx, cfg, daemon.Options{
			FilesSpool: r.spool,
			Log:        slog.New(r.log),
			Registry:   r.reg,
			Target: target.Options{
				Retry:    objstore.RetryPolicy{Attempts: 4, Base: 50 * time.Millisecond, Max: time.Second},
				Timeouts: objstore.Timeouts{Op: 2 * time.Second},
			},
			SpoolBackoff: spool.Backoff{Base: 200 * time.Millisecond, Max: 3 * time.Second},
			Ready:        func(string) { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("daemon did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	return r
}

// drop puts n files of size bytes into the inbox, renamed in.
func (r *faultRig) drop(prefix string, n, size int) {
	r.t.Helper()
	for i := range n {
		key := fmt.Sprintf("%s/%03d", prefix, i)
		data := make([]byte, size)
		rand.Read(data)
		r.want[key] = data
		p := filepath.Join(r.inbox, filepath.FromSlash(key))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p+".part", data, 0o644); err != nil {
			r.t.Fatal(err)
		}
		if err := os.Rename(p+".part", p); err != nil {
			r.t.Fatal(err)
		}
	}
}

// arrived waits until the store holds every file dropped so far with the
// right bytes.
func (r *faultRig) arrived(within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		missing := ""
		for key, data := range r.want {
			rc, _, err := r.store.Get(context.Background(), key, nil)
			if err != nil {
				missing = key
				break
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data) {
				r.t.Fatalf("%s arrived with %d wrong bytes: %v", key, len(got), err)
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s had not arrived %v after the fault cleared", missing, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *faultRig) counter(name string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += metricValue(m)
			}
		}
	}
	return total
}

// waitFor waits until cond holds. The deadline only turns a daemon that
// stopped making progress into a failure instead of a hang; nothing is
// assumed to happen within it.
func (r *faultRig) waitFor(what string, within time.Duration, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("still waiting after %v for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logWatch is a slog.Handler that notes the uploader's retries: the
// event that shows an entry went through the spool's backoff.
type logWatch struct {
	mu sync.Mutex
	// retried is the highest attempt count of an upload that failed and
	// was put back in the spool for a later try, since the last reset.
	retried int64
}

func (l *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (l *logWatch) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logWatch) WithGroup(string) slog.Handler            { return l }

func (l *logWatch) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "upload failed; will retry" {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "attempts" {
			l.mu.Lock()
			l.retried = max(l.retried, a.Value.Int64())
			l.mu.Unlock()
		}
		return true
	})
	return nil
}

// reset forgets the retries seen so far.
func (l *logWatch) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retried = 0
}

func (l *logWatch) attempts() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.retried
}

func metricValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

// TestFilesSurviveStoreFaults ships files through latency, connections
// reset in the middle of PUTs, and an outage of the store that lasts until
// one upload has failed five times in a row: each time it exhausted its
// store retries and went back to the spool, and the fifth failure takes
// the spool's backoff to its ceiling. Every file must arrive intact, and
// the retries and backoff must show in the metrics. Each fault lasts until
// the daemon has shown what the fault is there to provoke, not for a
// length of time, so a slow machine makes the test slower, not flaky.
func TestFilesSurviveStoreFaults(t *testing.T) {
	srv := testenv.S3(t)
	proxy := testenv.NewProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	r := newFaultRig(t, proxy, srv)

	r.drop("calm", 20, 8<<10)
	r.arrived(60 * time.Second)

	proxy.Latency(300 * time.Millisecond)
	r.drop("slow", 20, 8<<10)
	r.arrived(120 * time.Second)
	proxy.Clear()

	// Each PUT carries 256 KiB; connections die after 64 KiB.
	retries := r.counter("ferry_objstore_retries_total")
	proxy.LimitData(64 << 10)
	r.drop("reset", 10, 256<<10)
	r.waitFor("a retry of a PUT cut short", 60*time.Second, func() bool {
		return r.counter("ferry_objstore_retries_total") > retries
	})
	proxy.Clear()
	r.arrived(60 * time.Second)

	retries = r.counter("ferry_objstore_retries_total")
	errors := r.counter("ferry_objstore_errors_total")
	r.log.reset()
	proxy.Down()
	r.drop("outage", 30, 8<<10)
	r.waitFor("the outage to take every file into the spool, fail and retry store calls, "+
		"and send an upload back to the spool five times", 120*time.Second, func() bool {
		return countRegular(r.inbox) == 0 &&
			r.counter("ferry_objstore_errors_total") > errors &&
			r.counter("ferry_objstore_retries_total") > retries &&
			r.log.attempts() >= 5
	})
	retriesDuringOutage := r.counter("ferry_objstore_retries_total") - retries
	errorsDuringOutage := r.counter("ferry_objstore_errors_total") - errors
	proxy.Up()
	r.arrived(60 * time.Second)
	t.Logf("during the outage: retries %v, errors %v", retriesDuringOutage, errorsDuringOutage)

	// A file is in the store a moment before its spool entry is removed.
	var rep spool.Report
	r.waitFor("the spool to drain", 60*time.Second, func() bool {
		var err error
		rep, err = spool.Check(r.spool, spool.Limits{}, time.Now())
		return err == nil && rep.Entries == 0
	})
	if !rep.OK() {
		t.Fatalf("spool after the faults: %+v", rep)
	}
	if entries, _ := os.ReadDir(r.inbox); countRegular(r.inbox) != 0 {
		t.Fatalf("inbox not empty: %v", entries)
	}
}

func countRegular(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
