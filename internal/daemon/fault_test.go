package daemon_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/objstore"
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
	cancel context.CancelFunc
	done   chan error
}

func newFaultRig(t *testing.T, proxy *testenv.Proxy, srv testenv.S3Server) *faultRig {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	bucket := testenv.Bucket(t, srv)
	direct := fmt.Sprintf("s3://%s/up?endpoint=%s&region=us-east-1&force-path-style=true", bucket, srv.Endpoint)
	viaProxy := fmt.Sprintf("s3://%s/up?endpoint=%s&region=us-east-1&force-path-style=true", bucket, proxy.URL())
	store, err := target.OpenURL(context.Background(), direct, target.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &faultRig{t: t, inbox: filepath.Join(dir, "inbox"), store: store, reg: prometheus.NewRegistry(),
		want: map[string][]byte{}, spool: filepath.Join(dir, "spool"), done: make(chan error, 1)}
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

func metricValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

// TestFilesSurviveStoreFaults ships files through latency, connections
// reset in the middle of PUTs, and a 30-second outage of the store. Every
// file must arrive intact, and the retries and backoff must show in the
// metrics.
func TestFilesSurviveStoreFaults(t *testing.T) {
	srv := testenv.S3(t)
	proxy := testenv.NewProxy(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	r := newFaultRig(t, proxy, srv)

	r.drop("calm", 20, 8<<10)
	r.arrived(30 * time.Second)

	proxy.Latency(300 * time.Millisecond)
	r.drop("slow", 20, 8<<10)
	r.arrived(60 * time.Second)
	proxy.Clear()

	// Each PUT carries 256 KiB; connections die after 64 KiB.
	proxy.LimitData(64 << 10)
	r.drop("reset", 10, 256<<10)
	time.Sleep(4 * time.Second)
	if got := r.counter("ferry_objstore_retries_total"); got == 0 {
		t.Fatal("connections cut mid-PUT caused no retries")
	}
	proxy.Clear()
	r.arrived(30 * time.Second)

	proxy.Down()
	r.drop("outage", 30, 8<<10)
	time.Sleep(30 * time.Second)
	retriesDuringOutage := r.counter("ferry_objstore_retries_total")
	errors := r.counter("ferry_objstore_errors_total")
	proxy.Up()
	r.arrived(30 * time.Second)

	t.Logf("retries %v, errors %v", retriesDuringOutage, errors)
	if errors == 0 || retriesDuringOutage == 0 {
		t.Fatalf("a 30 s outage left no trace in the metrics: retries %v, errors %v", retriesDuringOutage, errors)
	}
	rep, err := spool.Check(r.spool, spool.Limits{}, time.Now())
	if err != nil || !rep.OK() || rep.Entries != 0 {
		t.Fatalf("spool after the faults: %+v, %v", rep, err)
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
