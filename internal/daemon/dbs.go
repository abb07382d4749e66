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
	"github.com/ferrydb/ferry/internal/target"
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
		if db.Dir != nil {
			continue // a failed start opened none of their spools
		}
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

// captureOptions returns the Replicator options of db, but for its
// targets.
func (d *daemon) captureOptions(db config.DB) capture.Options {
	co := d.o.Capture
	co.DBPath = db.Path
	co.SpoolDir = SpoolDir(d.cfg.Spool, db.Path)
	co.SyncInterval = db.SyncInterval
	co.SnapshotInterval = db.SnapshotInterval
	co.MaxSpoolBytes = db.MaxSpoolBytes
	co.Addresser = db.Replicas[0].Keys.Addresser() // the config gives every replica of a database the same keys
	if co.Log == nil {
		co.Log = d.o.Log
	}
	return co
}

// openDB opens the replicator of a database the config lists by path and
// starts it, with its leases, its gc sweep, its scrub and its control
// socket. Any failure here fails the start.
func (d *daemon) openDB(ctx context.Context, db config.DB) error {
	co := d.captureOptions(db)
	co.Targets = map[string]objstore.Store{}
	for _, r := range db.Replicas {
		url := r.Target.String()
		s := d.stores[url]
		if s == nil {
			// A database a reload added, on a replica not opened yet.
			var err error
			if s, err = target.Open(ctx, r, d.storeOpts); err != nil {
				return err
			}
		}
		co.Targets[url] = s
	}
	// The unit's context ends when a reload drops the database: its
	// leases, sweep, scrub and socket stop with it.
	u := d.newUnit(ctx, db, co, nil)
	fail := func(err error) error {
		u.stop()
		return err
	}
	leases, err := d.takeLeases(u.ctx, db, co.Targets)
	u.leases = leases
	if err != nil {
		return fail(err)
	}
	if tk := d.o.Takeover; tk != nil && tk.DB == db.Path {
		co.Continues = tk.Continues
	} else if db.RestoreIfNotExists {
		c, err := d.restoreIfMissing(ctx, db, d.stores)
		if err != nil {
			return fail(err)
		}
		co.Continues = c
	}
	u.co = co
	r, err := u.wake()
	if err != nil {
		return fail(err)
	}
	d.fleet.add(u)
	if db.Retention > 0 && db.GCInterval > 0 {
		d.run(u.ctx, func(ctx context.Context) error { d.sweep(ctx, db, u, co.Targets); return nil })
	}
	if db.ScrubInterval > 0 {
		sc := scrub.New(scrub.Options{Targets: co.Targets, Repair: r, Interval: db.ScrubInterval, Keys: db.Replicas[0].Keys.Keys(),
			Log: d.o.Log.With("db", db.Path), Metrics: d.scrubMetrics()})
		d.run(u.ctx, func(ctx context.Context) error { sc.Run(ctx); return nil })
	}
	if err := d.listenControl(u.ctx, SocketPath(db.Path), func() []*unit { return []*unit{u} }, nil, true); err != nil {
		d.o.Log.Warn("no control socket: ferry sync and ferry status will not find this daemon without -config and addr:", "db", db.Path, "err", err)
	}
	return nil
}

// openEntry starts every database found under a dir entry, with one
// control socket for all of them in the directory.
func (d *daemon) openEntry(ctx context.Context, db config.DB) error {
	e, err := d.fleet.openEntry(ctx, db, d.storeOpts)
	if err != nil {
		return err
	}
	ctx = e.ctx
	units := func() []*unit {
		var out []*unit
		for _, u := range d.fleet.all() {
			if u.entry == e {
				out = append(out, u)
			}
		}
		return out
	}
	if err := d.listenControl(ctx, DirSocketPath(db.Dir.Path), units, e, false); err != nil {
		d.o.Log.Warn("no control socket: ferry sync and ferry status will not find this daemon without -config and addr:", "dir", db.Dir.Path, "err", err)
	}
	return nil
}

// DirSocketPath is the control socket of the daemon replicating the
// databases of a dir entry for directory dir.
func DirSocketPath(dir string) string {
	return filepath.Join(dir, ".ferry.sock")
}

// SocketPaths are the control sockets that may answer for the database at
// dbPath, nearest first: its own, then those of dir entries for each
// directory above it.
func SocketPaths(dbPath string) []string {
	paths := []string{SocketPath(dbPath)}
	for dir := filepath.Dir(dbPath); ; dir = filepath.Dir(dir) {
		paths = append(paths, DirSocketPath(dir))
		if dir == filepath.Dir(dir) {
			return paths
		}
	}
}

// listenControl serves the status and sync endpoints of the units on a
// unix socket at path. A stale socket left by a daemon that died is
// replaced; a live one means another daemon replicates these databases.
func (d *daemon) listenControl(ctx context.Context, path string, units func() []*unit, entry *dirEntry, own bool) error {
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
	d.serve(ctx, ln, d.handler(units, entry, false, own))
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
type dbCollector struct{ fleet *fleet }

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
	for _, u := range c.fleet.all() {
		st := u.Status()
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
