package bench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
)

// idleFor is the idle window; FERRY_BENCH_IDLE_FOR overrides it (a Go
// duration).
func idleFor(b *testing.B) time.Duration {
	if s := os.Getenv("FERRY_BENCH_IDLE_FOR"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("FERRY_BENCH_IDLE_FOR: %v", err)
		}
		return d
	}
	return 20 * time.Second
}

// BenchmarkIdleRequests counts the store requests ferry makes for a
// database nobody writes: after the initial snapshot, one commit and a
// Sync that saw it restorable, the window starts, and every request
// (retries included, from ferry_objstore_requests_total) until it ends
// is counted and scaled to an hour. The capture runs with its default
// intervals.
func BenchmarkIdleRequests(b *testing.B) {
	srv := s3Server(b)
	window := idleFor(b)
	var requests float64
	var idle time.Duration
	for b.Loop() {
		db := newAppDB(b)
		r := startReplica(b, srv, db, capture.Options{})
		runApp(b, appJob{Do: "insert", DB: db, Count: 1})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := r.Sync(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		before, counts := storeRequests(b, r.reg), r.store.counts()
		start := time.Now()
		time.Sleep(window)
		n := storeRequests(b, r.reg) - before
		idle += time.Since(start)
		requests += n
		if n > 0 {
			u := since(counts, r.store.counts())
			var ops []string
			for _, k := range slices.Sorted(maps.Keys(u.byOp)) {
				ops = append(ops, fmt.Sprintf("%s=%d", k, u.byOp[k]))
			}
			b.Logf("%.0f requests while idle for %s: %v", n, window, ops)
		}
		if err := r.stop(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(requests/idle.Hours(), "requests/hour")
}
