package bench

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/testenv"
)

// BenchmarkOutageLag compares the lag ferry reports during a store outage
// with the true lag, and with what the old rule (the age of the newest
// commit, while the target lacks it) would have reported. A writer commits
// a row every 100 ms; ferry reaches versitygw through a proxy that goes
// down for 30 s. Every 2 s the benchmark restores the replica straight
// from the server (around the proxy), finds the newest row it holds, and
// takes the true lag as the age of the commit after it. It reports the
// largest gap between reported and true lag, both lags at the end of the
// outage, and how long after the store came back the reported lag fell
// under 1 s.
func BenchmarkOutageLag(b *testing.B) {
	srv := s3Server(b)
	const outage = 30 * time.Second
	var maxErr, trueEnd, reportedEnd, oldEnd, recovery float64
	for b.Loop() {
		u, err := url.Parse(srv.Endpoint)
		if err != nil {
			b.Fatal(err)
		}
		proxy := testenv.NewProxy(b, u.Host)
		bucket := testenv.Bucket(b, srv)
		viaProxy := srv
		viaProxy.Endpoint = proxy.URL()
		rawURL := fmt.Sprintf("s3://%s/bench?endpoint=%s&region=%s&force-path-style=true", bucket, viaProxy.Endpoint, srv.Region)
		tgt, err := config.ParseURL(rawURL)
		if err != nil {
			b.Fatal(err)
		}
		// Retries as the daemon sets them, so that recovery is measured
		// as a user would see it.
		store, err := target.Open(context.Background(), config.Replica{
			Target: tgt, AccessKeyID: config.NewSecret(srv.AccessKey), SecretAccessKey: config.NewSecret(srv.SecretKey),
		}, target.Options{Retry: objstore.RetryPolicy{Max: 5 * time.Second}})
		if err != nil {
			b.Fatal(err)
		}
		direct := bucketStore(b, srv, bucket)

		dbPath := newAppDB(b)
		db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
		if err != nil {
			b.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		if _, err := db.Exec("CREATE TABLE IF NOT EXISTS outage (id INTEGER PRIMARY KEY, at INTEGER)"); err != nil {
			b.Fatal(err)
		}
		r, err := capture.Open(context.Background(), capture.Options{
			DBPath: dbPath, SpoolDir: filepath.Join(filepath.Dir(dbPath), "spool-outage"),
			Targets:      map[string]objstore.Store{rawURL: store},
			SyncInterval: time.Second,
			SpoolBackoff: spool.Backoff{Base: 250 * time.Millisecond, Max: 5 * time.Second},
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		waitStatus(b, r, "the initial snapshot", func(st capture.Status) bool {
			return st.Targets[0].Snapshot > 0 && st.Targets[0].Replicated >= st.TXID
		})

		commits := map[int64]time.Time{}
		stopWriter := make(chan struct{})
		writerDone := make(chan error, 1)
		times := make(chan [2]int64, 4096)
		go func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopWriter:
					close(times)
					writerDone <- nil
					return
				case <-tick.C:
				}
				now := time.Now()
				res, err := db.Exec("INSERT INTO outage (at) VALUES (?)", now.UnixNano())
				if err != nil {
					close(times)
					writerDone <- err
					return
				}
				id, _ := res.LastInsertId()
				times <- [2]int64{id, now.UnixNano()}
			}
		}()
		drain := func() {
			for {
				select {
				case c, ok := <-times:
					if !ok {
						return
					}
					commits[c[0]] = time.Unix(0, c[1])
				default:
					return
				}
			}
		}
		time.Sleep(3 * time.Second) // a steady state before the outage

		proxy.Down()
		down := time.Now()
		var reported, truth, old float64
		for time.Since(down) < outage {
			time.Sleep(2 * time.Second)
			drain()
			held := newestRow(b, direct, filepath.Join(b.TempDir(), "probe.db"))
			now := time.Now()
			st := r.Status()
			reported = st.Targets[0].Lag.Seconds()
			truth = 0
			if at, ok := commits[held+1]; ok {
				truth = now.Sub(at).Seconds()
			}
			old = 0
			if st.Targets[0].Replicated < st.TXID {
				old = now.Sub(st.Time).Seconds()
			}
			maxErr = max(maxErr, abs(reported-truth))
			b.Logf("%4.0fs into the outage: reported %.1fs, true %.1fs, old rule %.2fs", now.Sub(down).Seconds(), reported, truth, old)
		}
		trueEnd, reportedEnd, oldEnd = truth, reported, old
		proxy.Up()
		up := time.Now()
		waitStatus(b, r, "the lag to fall under 1s", func(st capture.Status) bool { return st.Targets[0].Lag < time.Second })
		recovery = time.Since(up).Seconds()

		close(stopWriter)
		if err := <-writerDone; err != nil {
			b.Fatal(err)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		db.Close()
		os.RemoveAll(filepath.Dir(dbPath))
	}
	b.ReportMetric(maxErr, "max-error-s")
	b.ReportMetric(trueEnd, "true-lag-s")
	b.ReportMetric(reportedEnd, "reported-lag-s")
	b.ReportMetric(oldEnd, "old-rule-lag-s")
	b.ReportMetric(recovery, "recovery-s")
}

// newestRow restores the latest state of store to path and returns the
// largest row id it holds.
func newestRow(b *testing.B, store objstore.Store, path string) int64 {
	b.Helper()
	restoreNewest(b, store, path, restore.Options{Parallelism: 4})
	defer os.Remove(path)
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var id sql.NullInt64
	if err := db.QueryRow("SELECT max(id) FROM outage").Scan(&id); err != nil {
		b.Fatal(err)
	}
	return id.Int64
}

func waitStatus(b *testing.B, r *capture.Replicator, what string, ok func(capture.Status) bool) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !ok(r.Status()) {
		if time.Now().After(deadline) {
			b.Fatalf("%s did not happen within 2 minutes; status %+v", what, r.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
