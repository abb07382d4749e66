package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/scrub"
)

// SpoolDir is where the spool and capture state of the database at dbPath
// live: under root when the config names a spool root, beside the
// database otherwise.
func SpoolDir(root, dbPath string) string {
	if root == "" {
		return filepath.Join(filepath.Dir(dbPath), "."+filepath.Base(dbPath)+"-ferry")
	}
	sum := sha256.Sum256([]byte(dbPath))
	return filepath.Join(root, filepath.Base(dbPath)+"-"+hex.EncodeToString(sum[:4]))
}

// freshSpools returns the spool directories of cfg's databases that do
// not exist yet: the ones a failed start must not leave behind.
func freshSpools(cfg *config.Config) []string {
	var dirs []string
	for _, db := range cfg.DBs {
		dir := SpoolDir(cfg.Spool, db.Path)
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// SocketPath is the control socket of the daemon replicating the database
// at dbPath. It sits beside the database whatever the spool root, so that
// `ferry sync DB_PATH` and `ferry status DB_PATH` find it from the path
// alone.
func SocketPath(dbPath string) string {
	return filepath.Join(filepath.Dir(dbPath), "."+filepath.Base(dbPath)+"-ferry.sock")
}

// openDB opens the replicator of one database and starts it, with its
// control socket.
func (d *daemon) openDB(ctx context.Context, db config.DB, stores map[string]objstore.Store) (*capture.Replicator, error) {
	co := d.o.Capture
	co.DBPath = db.Path
	co.SpoolDir = SpoolDir(d.cfg.Spool, db.Path)
	co.Targets = map[string]objstore.Store{}
	for _, r := range db.Replicas {
		co.Targets[r.Target.String()] = stores[r.Target.String()]
	}
	if err := d.takeLeases(ctx, db, co.Targets); err != nil {
		return nil, err
	}
	keys := db.Replicas[0].Keys // the config gives every replica of a database the same
	resnapshot, err := d.checkKeys(ctx, db, co.Targets)
	if err != nil {
		return nil, err
	}
	co.Addresser, co.Resnapshot = keys.Addresser(), resnapshot
	if tk := d.o.Takeover; tk != nil && tk.DB == db.Path {
		co.Continues = tk.Continues
	} else if db.RestoreIfNotExists {
		c, err := d.restoreIfMissing(ctx, db, stores)
		if err != nil {
			return nil, err
		}
		co.Continues = c
	}
	co.SyncInterval = db.SyncInterval
	co.SnapshotInterval = db.SnapshotInterval
	co.MaxSpoolBytes = db.MaxSpoolBytes
	if co.Log == nil {
		co.Log = d.o.Log
	}
	r, err := capture.Open(ctx, co)
	if err != nil {
		return nil, err
	}
	d.run(ctx, func(ctx context.Context) error {
		defer r.Close()
		return r.Run(ctx)
	})
	if db.Retention > 0 && db.GCInterval > 0 {
		targets := co.Targets
		d.run(ctx, func(ctx context.Context) error { d.sweep(ctx, db, r, targets); return nil })
	}
	if db.ScrubInterval > 0 {
		sc := scrub.New(scrub.Options{Targets: co.Targets, Repair: r, Interval: db.ScrubInterval, Keys: keys.Keys(),
			Log: d.o.Log.With("db", db.Path), Metrics: d.scrubMetrics()})
		d.run(ctx, func(ctx context.Context) error { sc.Run(ctx); return nil })
	}
	if err := d.listenControl(ctx, db.Path, r); err != nil {
		d.o.Log.Warn("no control socket: ferry sync and ferry status will not find this daemon without -config and addr:", "db", db.Path, "err", err)
	}
	return r, nil
}

// listenControl serves the status and sync endpoints of one database on a
// unix socket beside it. A stale socket left by a daemon that died is
// replaced; a live one means another daemon replicates this database.
func (d *daemon) listenControl(ctx context.Context, dbPath string, r *capture.Replicator) error {
	path := SocketPath(dbPath)
	if len(path) > 100 {
		return fmt.Errorf("socket path %s is too long for a unix socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("another process answers on %s", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	d.serve(ctx, ln, d.handler([]*capture.Replicator{r}, false))
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		<-ctx.Done()
		os.Remove(path)
	}()
	return nil
}

// dbCollector exports each database's replication state as Prometheus
// series, read from Status at scrape time.
type dbCollector struct{ dbs []*capture.Replicator }

var (
	descTXID = prometheus.NewDesc("ferry_db_txid", "Newest transaction ferry captured from the database.", []string{"db"}, nil)
	descRepl = prometheus.NewDesc("ferry_db_replicated_txid", "Newest transaction a target can restore.", []string{"db", "target"}, nil)
	descLag  = prometheus.NewDesc("ferry_db_lag_seconds", "Age of the oldest captured transaction a target cannot restore yet; 0 when it restores every one.", []string{"db", "target"}, nil)
	descFail = prometheus.NewDesc("ferry_db_target_failing_seconds", "How long a target's store has been failing; 0 while it answers.", []string{"db", "target"}, nil)
	descErrs = prometheus.NewDesc("ferry_db_capture_errors_total", "Failures of the capture itself: reading the log, writing the spool.", []string{"db"}, nil)
	descSp   = prometheus.NewDesc("ferry_db_spool_bytes", "Change sets waiting in the spool for upload.", []string{"db"}, nil)
	descGaps = prometheus.NewDesc("ferry_db_gaps", "Ranges of transactions a target cannot restore.", []string{"db", "target"}, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTXID, descRepl, descLag, descFail, descErrs, descSp, descGaps} {
		ch <- d
	}
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.dbs {
		st := r.Status()
		ch <- prometheus.MustNewConstMetric(descTXID, prometheus.GaugeValue, float64(st.TXID), st.DB)
		ch <- prometheus.MustNewConstMetric(descSp, prometheus.GaugeValue, float64(st.SpoolBytes), st.DB)
		ch <- prometheus.MustNewConstMetric(descErrs, prometheus.CounterValue, float64(st.Errors), st.DB)
		for _, t := range st.Targets {
			ch <- prometheus.MustNewConstMetric(descRepl, prometheus.GaugeValue, float64(t.Replicated), st.DB, t.URL)
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, t.LagSeconds, st.DB, t.URL)
			failing := 0.0
			if !t.FailingSince.IsZero() {
				failing = time.Since(t.FailingSince).Seconds()
			}
			ch <- prometheus.MustNewConstMetric(descFail, prometheus.GaugeValue, failing, st.DB, t.URL)
			gaps := 0
			for _, g := range st.Gaps {
				if g.Target == t.URL {
					gaps++
				}
			}
			ch <- prometheus.MustNewConstMetric(descGaps, prometheus.GaugeValue, float64(gaps), st.DB, t.URL)
		}
	}
}
