package spool

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

// logBuf collects JSON log records.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) records(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestMonitorConfirmsAndEnds(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	enqueueT(t, s, "up", "x", nil)
	var logs logBuf
	reg := prometheus.NewRegistry()
	m := NewMonitor(dir, Limits{}, time.Hour, 3, slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	clk := newClock()
	clk.Set(time.Now())
	m.now = clk.Now

	raised := func() float64 { return testutil.ToFloat64(m.problems.WithLabelValues(string(KindStaleTmp))) }
	total := func() float64 { return testutil.ToFloat64(m.total.WithLabelValues(string(KindStaleTmp))) }

	stale := filepath.Join(dir, tmpName, "abandoned")
	os.WriteFile(stale, nil, 0o600)
	past := clk.Now().Add(-time.Hour)
	os.Chtimes(stale, past, past)

	// Seen twice, gone once, seen twice more: never three in a row.
	m.cycle()
	m.cycle()
	os.Rename(stale, stale+".x")
	m.cycle()
	os.Rename(stale+".x", stale)
	m.cycle()
	m.cycle()
	if len(logs.records(t)) != 0 || raised() != 0 {
		t.Fatalf("raised before %d cycles in a row: %v", 3, logs.records(t))
	}
	m.cycle() // third in a row
	m.cycle() // still there: no second log
	recs := logs.records(t)
	if len(recs) != 1 || recs[0]["level"] != "WARN" || recs[0]["kind"] != string(KindStaleTmp) || recs[0]["path"] != stale {
		t.Fatalf("logs after raising: %v", recs)
	}
	if raised() != 1 || total() != 1 {
		t.Fatalf("gauge %v counter %v, want 1 and 1", raised(), total())
	}

	os.Remove(stale)
	clk.Advance(time.Minute)
	m.cycle()
	recs = logs.records(t)
	if len(recs) != 2 || recs[1]["level"] != "INFO" || recs[1]["msg"] != "spool problem ended" || recs[1]["path"] != stale {
		t.Fatalf("logs after the end: %v", recs)
	}
	if raised() != 0 || total() != 1 {
		t.Fatalf("gauge %v counter %v after the end, want 0 and 1", raised(), total())
	}
	n, err := testutil.GatherAndCount(reg, "ferry_spool_problems", "ferry_spool_problems_raised_total")
	if err != nil || n != 2*len(Kinds()) {
		t.Fatalf("gathered %d series, %v; want every kind exported", n, err)
	}
}

func TestMonitorUnreadableSpool(t *testing.T) {
	var logs logBuf
	dir := filepath.Join(t.TempDir(), "missing")
	m := NewMonitor(dir, Limits{}, time.Hour, 1, slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	m.cycle()
	recs := logs.records(t)
	if len(recs) != 1 || recs[0]["kind"] != string(KindUnreadable) {
		t.Fatalf("logs: %v", recs)
	}
}

func TestMonitorRunStops(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	enqueueT(t, s, "up", "x", nil)
	var logs logBuf
	m := NewMonitor(dir, Limits{MaxAge: time.Nanosecond}, 5*time.Millisecond, 2, slog.New(slog.NewJSONHandler(&logs, nil)), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(logs.records(t)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	recs := logs.records(t)
	if len(recs) == 0 || recs[0]["kind"] != string(KindTooOld) {
		t.Fatalf("Run raised %v", recs)
	}
}

func TestCollector(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{MaxBytes: 100})
	enqueueT(t, s, "up", "abc", nil)
	enqueueT(t, s, "up", "de", nil)
	enqueueT(t, s, "seg", "f", nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	want := `
# HELP ferry_spool_bytes Entry data held in the spool, in bytes.
# TYPE ferry_spool_bytes gauge
ferry_spool_bytes{spool="DIR"} 6
# HELP ferry_spool_entries Entries in a spool queue, checked out ones included.
# TYPE ferry_spool_entries gauge
ferry_spool_entries{queue="seg",spool="DIR"} 1
ferry_spool_entries{queue="up",spool="DIR"} 2
# HELP ferry_spool_max_bytes Bound on the spool's entry data, in bytes; 0 when unbounded.
# TYPE ferry_spool_max_bytes gauge
ferry_spool_max_bytes{spool="DIR"} 100
`
	want = strings.ReplaceAll(want, "DIR", dir)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
