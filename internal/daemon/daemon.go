// Package daemon runs what `ferry replicate` runs: a replicator per
// database, the spool and uploaders for plain files, the inbox watchers
// feeding them, the spool monitor, a control socket per database, and the
// HTTP endpoints that report on all of it. It owns the lifetime of those
// parts: they start together, and when the context ends they stop
// together, leaving every unfinished entry in its spool.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/lease"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/scrub"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/statuspage"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/uploader"
)

// Options are what the daemon takes besides the config.
type Options struct {
	// FilesSpool is the spool directory for plain files.
	FilesSpool string
	Log        *slog.Logger
	// Registry receives every metric; nil makes a private one.
	Registry *prometheus.Registry
	// Target tunes the object-store wrappers (tests shorten the retries).
	Target target.Options
	// SpoolBackoff spaces the retries of an entry whose upload failed;
	// zero means the spool's default (1s doubling to 5m).
	SpoolBackoff spool.Backoff
	// Capture tunes every database's replicator; its DBPath, SpoolDir,
	// Targets and the per-database settings of the config are filled in.
	Capture capture.Options
	// GCGrace is how old a chunk no snapshot names must be before gc
	// deletes it; zero means gc.DefaultGrace (tests shorten it).
	GCGrace time.Duration
	// Ready, when set, is called once everything has started, with the
	// address the HTTP server listens on ("" without one).
	Ready func(addr string)
	// IdleAfter is how long a database found under a dir entry stays
	// held after its last commit; zero means fleetIdleAfter (tests
	// shorten it).
	IdleAfter time.Duration
	// Reload, when set, carries configs to replace the running one, as
	// SIGHUP asks: databases and directories added start, removed ones
	// stop, changed ones start again, and the others go on untouched.
	Reload <-chan *config.Config
	// Takeover, when set, hands the daemon a database that a standby has
	// just brought up to date from its replica, with that replica's lease
	// already held: the daemon replicates it on as the same history.
	Takeover *Takeover
}

// Takeover is a standby's database at the moment it becomes the primary.
type Takeover struct {
	// DB is the database's path, as the config names it.
	DB string
	// Continues is where the database stands in the replica's history.
	Continues *capture.Continuation
	// Lease is the replicator's lease on that replica (Continues.URL),
	// taken by the standby and renewed by the daemon from now on.
	Lease *lease.Lease
}

// retryCeiling is the longest wait between two attempts at a store.
const retryCeiling = 5 * time.Second

// daemon is one running `ferry replicate`.
type daemon struct {
	cfg *config.Config
	o   Options
	// fleet holds every database, listed by path or found under a dir
	// entry.
	fleet *fleet
	// history keeps every target's lag over the last hour for the
	// status page.
	history *statuspage.History
	// stores are the stores of the databases listed by path and of the
	// inboxes, by replica URL; storeOpts opened them.
	stores    map[string]objstore.Store
	storeOpts target.Options
	wg        sync.WaitGroup
	stop      context.CancelFunc
	// files is the spool of plain files; nil without inboxes.
	files *spool.Spool
	// inboxes are the config's inboxes, watched, and filesUploads ships
	// the files spool; set at start.
	inboxes      []watchedInbox
	filesUploads *uploader.Uploader
	// scrubs counts what every database's scrub finds; made at the first.
	scrubs *scrub.Metrics
	// listed is the config's dbs as last loaded; only reload, on Run's
	// goroutine, reads and replaces it. cfg keeps the config the daemon
	// started with.
	listed []config.DB
	// mu guards leases.
	mu sync.Mutex
	// leases are the replica leases held (see takeLeases).
	leases []*lease.Lease

	errOnce  sync.Once
	firstErr error
}

// Run runs the daemon until ctx ends, then stops it as Stop says. It
// fails at start, with one clear error, for what an operator must fix: a
// database that is missing or not in WAL mode, a replica whose bucket is
// missing or whose credentials are refused, an inbox that does not exist,
// a spool that another process holds. A store that does not answer yet is
// not one of those: it is logged, and the databases are captured into
// their spools until it does.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	if len(cfg.DBs) == 0 && len(cfg.Files) == 0 {
		return fmt.Errorf("%s: nothing to replicate: no dbs and no files", cfg.Source)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Target.Metrics == nil {
		o.Target.Metrics = objstore.NewMetrics(o.Registry)
	}
	// A replicator runs unattended: after an outage it must notice the
	// store is back within seconds, not after a backoff of minutes, or the
	// lag it reports would stay high long after the cause is gone. One
	// attempt every few seconds costs nothing while the store is down.
	if o.Target.Retry.Max == 0 {
		o.Target.Retry.Max = retryCeiling
	}
	if o.Capture.SpoolBackoff == (spool.Backoff{}) {
		o.Capture.SpoolBackoff = spool.Backoff{Base: 250 * time.Millisecond, Max: retryCeiling}
	}
	// Before any replica is opened (a file:// one would be created): a
	// database that is not there is a typo to report, not to replicate.
	for _, db := range cfg.DBs {
		if db.Dir != nil {
			if fi, err := os.Stat(db.Dir.Path); err != nil || !fi.IsDir() {
				return fmt.Errorf("dir entry %s: no such directory", db.Dir.Path)
			}
			continue
		}
		fi, err := os.Stat(db.Path)
		if errors.Is(err, fs.ErrNotExist) && db.RestoreIfNotExists {
			continue // restored, or awaited, once its replicas are open
		}
		if err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("database %s: no such file", db.Path)
		}
	}
	storeOpts := o.Target
	storeOpts.Check = true
	storeOpts.TempDir = cfg.Spool
	storeOpts.Unreachable = func(err error) {
		o.Log.Warn("store not reachable at start; capturing into the spool and retrying", "err", err)
	}
	stores, err := openStores(ctx, cfg, storeOpts)
	if err != nil {
		return err
	}
	// The parts run under a context of their own, so that the end of ctx
	// can be answered by a flush before they stop.
	stopping := ctx
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d := &daemon{cfg: cfg, o: o, stop: cancel, stores: stores, storeOpts: storeOpts, listed: cfg.DBs}
	d.fleet = newFleet(d)
	d.history = statuspage.NewHistory()
	// A start that fails removes the database spools it created, once
	// what it started has stopped (this runs after the deferred stop
	// below): a typo or a database not in WAL mode leaves nothing behind.
	fresh := freshSpools(cfg)
	started := false
	defer func() {
		if !started {
			for _, dir := range fresh {
				spool.RemoveUnused(dir)
			}
		}
	}()
	// Whatever way Run returns, everything it started stops first.
	defer func() {
		cancel()
		d.wg.Wait()
		d.releaseLeases()
	}()

	// Databases listed by path first: a dir entry leaves them to their
	// own entries.
	for _, db := range cfg.DBs {
		if db.Dir == nil {
			if err := d.openDB(ctx, db); err != nil {
				return err
			}
		}
	}
	for _, db := range cfg.DBs {
		if db.Dir != nil {
			if err := d.openEntry(ctx, db); err != nil {
				return err
			}
		}
	}
	d.run(ctx, func(ctx context.Context) error { d.fleet.loop(ctx); return nil })
	d.run(ctx, func(ctx context.Context) error { d.maintain(ctx); return nil })
	if len(cfg.Files) > 0 {
		if err := d.startFiles(ctx, stores); err != nil {
			return err
		}
	}
	o.Registry.MustRegister(&dbCollector{fleet: d.fleet})

	addr := ""
	if cfg.Addr != "" {
		ln, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
		}
		addr = ln.Addr().String()
		d.serve(ctx, ln, d.handler(d.fleet.all, nil, true, false))
		d.run(ctx, func(ctx context.Context) error { d.recordHistory(ctx); return nil })
	}
	if o.Takeover != nil {
		// The taken-over database's application starts at Ready: first
		// the replicator must have read the empty log, or what the
		// application writes would look like changes made before ferry
		// took the database over, which only a snapshot can carry on.
		for _, u := range d.fleet.all() {
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			_, err := u.Sync(sctx)
			cancel()
			if err != nil {
				return fmt.Errorf("take over %s: %w", o.Takeover.DB, err)
			}
		}
	}
	o.Log.Info("ferry is replicating", "dbs", len(d.fleet.all()), "idle", d.fleet.idleCount(), "inboxes", len(cfg.Files), "addr", addr)
	started = true
	if o.Ready != nil {
		o.Ready(addr)
	}
	for {
		select {
		case <-stopping.Done():
			err := d.flush(cfg.ShutdownTimeout)
			cancel()
			d.wg.Wait()
			if d.firstErr != nil {
				return d.firstErr
			}
			return err
		case <-ctx.Done():
			d.wg.Wait()
			return d.firstErr
		case next := <-o.Reload:
			d.reload(ctx, next)
		}
	}
}

// run runs f until ctx ends; an error from f stops the whole daemon.
func (d *daemon) run(ctx context.Context, f func(context.Context) error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := f(ctx); err != nil && ctx.Err() == nil {
			d.fail(err)
		}
	}()
}

// fail stops the whole daemon with err, unless it is stopping already.
func (d *daemon) fail(err error) {
	d.errOnce.Do(func() { d.firstErr = err; d.stop() })
}

// serve answers HTTP on ln until ctx ends.
func (d *daemon) serve(ctx context.Context, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	d.run(ctx, func(ctx context.Context) error {
		go func() { <-ctx.Done(); srv.Close() }()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
}

// openStores opens every replica the config names, once per URL, checking
// that each bucket exists and takes the credentials. A store that gives no
// answer is logged and opened all the same.
func openStores(ctx context.Context, cfg *config.Config, o target.Options) (map[string]objstore.Store, error) {
	replicas := map[string]config.Replica{}
	for _, db := range cfg.DBs {
		if db.Dir != nil {
			continue // opened shared, for every database found there
		}
		for _, r := range db.Replicas {
			replicas[r.Target.String()] = r
		}
	}
	for _, in := range cfg.Files {
		replicas[in.Replica.Target.String()] = in.Replica
	}
	stores := make(map[string]objstore.Store, len(replicas))
	for url, r := range replicas {
		s, err := target.Open(ctx, r, o)
		if err != nil {
			return nil, err
		}
		stores[url] = s
	}
	return stores, nil
}

// scrubMetrics returns the scrub's series, registered once per daemon.
func (d *daemon) scrubMetrics() *scrub.Metrics {
	if d.scrubs == nil {
		d.scrubs = scrub.NewMetrics(d.o.Registry)
	}
	return d.scrubs
}
