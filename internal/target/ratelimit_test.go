package target_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/target"
)

// fromConfig parses a daemon config naming a file replica under a fresh
// directory with the given replica settings, and returns that replica.
func fromConfig(t *testing.T, settings string) config.Replica {
	t.Helper()
	yml := "dbs:\n  - path: /data/app.db\n    replicas:\n      - url: file://" + t.TempDir() + "\n" + settings
	c, err := config.Parse([]byte(yml), "ferry.yml")
	if err != nil {
		t.Fatal(err)
	}
	return c.DBs[0].Replicas[0]
}

// These tests check lower bounds on elapsed time only: a limit must make
// work take at least as long as its budget allows. An upper bound would
// measure the machine, not the limit.

func TestOpenAppliesMaxRequestsPerSecond(t *testing.T) {
	r := fromConfig(t, "        max-requests-per-second: 20\n")
	m := objstore.NewMetrics(objstore.NewRegistry())
	s, err := target.Open(context.Background(), r, target.Options{Check: true, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 30 {
		s.Head(context.Background(), "k")
	}
	// 20 requests ride the burst; the other 10 need 0.5 s.
	if elapsed := time.Since(start); elapsed < 450*time.Millisecond {
		t.Errorf("30 requests at 20/s took %v, want at least 450ms", elapsed)
	}
	// The waits add up to 0.5 s less the time spent between them.
	if got := testutil.ToFloat64(m.RateLimitWait("file", objstore.LimitRequests)); got < 0.4 {
		t.Errorf("ferry_objstore_ratelimit_wait_seconds_total{backend=file,kind=requests} = %v, want at least 0.4", got)
	}
}

func TestOpenAppliesMaxUploadBytesPerSecond(t *testing.T) {
	r := fromConfig(t, "        max-upload-bytes-per-second: 1MiB\n")
	m := objstore.NewMetrics(objstore.NewRegistry())
	s, err := target.Open(context.Background(), r, target.Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := s.Put(context.Background(), "k", bytes.NewReader(make([]byte, 1<<20)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// 1 MiB at 1 MiB/s with a 256 KiB burst: at least 0.75 s.
	if elapsed := time.Since(start); elapsed < 700*time.Millisecond {
		t.Errorf("1 MiB put at 1 MiB/s took %v, want at least 0.7s", elapsed)
	}
	// The waits add up to 0.75 s less the time spent writing between them.
	if got := testutil.ToFloat64(m.RateLimitWait("file", objstore.LimitBytes)); got < 0.5 {
		t.Errorf("ferry_objstore_ratelimit_wait_seconds_total{backend=file,kind=bytes} = %v, want at least 0.5", got)
	}
}

// A replica's own limit wins over the process's, whichever is tighter; a
// replica without one keeps the process's.
func TestReplicaLimitsOverrideOptions(t *testing.T) {
	// One request a minute with a burst of one: the second request would
	// wait a minute, which the limiter refuses at once against a 10 s
	// deadline instead of sleeping.
	tight := objstore.Limits{RequestsPerSecond: 1.0 / 60}
	twoRequests := func(s objstore.Store) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Head(ctx, "k")
		_, err := s.Head(ctx, "k")
		if objstore.IsNotFound(err) {
			return nil
		}
		return err
	}

	s, err := target.Open(context.Background(), fromConfig(t, "        max-requests-per-second: 1000\n"), target.Options{Limits: tight})
	if err != nil {
		t.Fatal(err)
	}
	if err := twoRequests(s); err != nil {
		t.Errorf("replica allowing 1000/s under a process limit of 1/min: %v", err)
	}

	s, err = target.Open(context.Background(), fromConfig(t, ""), target.Options{Limits: tight})
	if err != nil {
		t.Fatal(err)
	}
	if err := twoRequests(s); err == nil {
		t.Error("replica with no limit of its own ignored the process limit of 1/min")
	}

	s, err = target.Open(context.Background(), fromConfig(t, "        max-requests-per-second: 0.016\n"), target.Options{Limits: objstore.Limits{RequestsPerSecond: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if err := twoRequests(s); err == nil {
		t.Error("replica limited to about 1/min ran at the process limit of 1000/s")
	}
}
