package gc_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/gc"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/objstore/filestore"
)

// BenchmarkRetention measures what a steady workload leaves in a replica
// with and without retention, on a compressed clock: one second stands
// for an hour, so snapshots come every "hour" and retention keeps three
// "hours" against the default of 72 (the shape is what matters: whether
// the replica levels off). Each run writes for 24 "hours"; both runs use
// the same workload, one after the other, and report the replica's
// objects and bytes at the end.
func BenchmarkRetention(b *testing.B) {
	const hours = 24
	for b.Loop() {
		for _, keep := range []bool{false, true} {
			objs, bytes := retentionRun(b, hours, keep)
			name := "no-retention"
			if keep {
				name = "retention"
			}
			b.ReportMetric(float64(objs), name+"-objects")
			b.ReportMetric(float64(bytes)/1e6, name+"-MB")
		}
	}
}

func retentionRun(b *testing.B, hours int, keep bool) (objects, bytes int64) {
	ctx := context.Background()
	dir := b.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)"); err != nil {
		b.Fatal(err)
	}
	store, err := filestore.New(filepath.Join(dir, "replica"))
	if err != nil {
		b.Fatal(err)
	}
	r, err := capture.Open(ctx, capture.Options{DBPath: dbPath, SpoolDir: filepath.Join(dir, "spool"),
		Targets: map[string]objstore.Store{"r": store}, SyncInterval: 100 * time.Millisecond, SnapshotInterval: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { stop(); <-done }()
	start := time.Now()
	lastSweep := start
	for i := 0; time.Since(start) < time.Duration(hours)*time.Second; i++ {
		// 2,000 rows updated in turn, plus a steady trickle of new ones.
		if _, err := db.Exec("INSERT OR REPLACE INTO t (id, v) VALUES (?, randomblob(1000))", i%2000+(i/20000)*2000); err != nil {
			b.Fatal(err)
		}
		if keep && time.Since(lastSweep) >= 500*time.Millisecond {
			lastSweep = time.Now()
			if _, err := gc.Run(ctx, store, gc.Options{Retention: 3 * time.Second, Grace: 2500 * time.Millisecond, ReprieveWindow: 200 * time.Millisecond}); err != nil {
				b.Fatal(err)
			}
		}
		if i%100 == 0 {
			time.Sleep(10 * time.Millisecond) // a steady load, not a flood
		}
	}
	if _, err := r.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	s := replicaSize(b, store)
	return s.objects, s.bytes
}
