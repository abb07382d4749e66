// Package daemon runs what `ferry replicate` runs: the spools, the
// uploaders draining them, the inbox watchers feeding them, the spool
// monitor, and the HTTP endpoints that report on all of it. It owns the
// lifetime of those parts: they start together, and when the context ends
// they stop together, leaving every unfinished entry in its spool.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/inbox"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/spool"
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
	// Ready, when set, is called once everything has started, with the
	// address the HTTP server listens on ("" without one).
	Ready func(addr string)
}

// Run runs the daemon until ctx ends. It fails at start, with one clear
// error, for what an operator must fix: a replica whose bucket is missing
// or whose credentials are refused, an inbox that does not exist, a spool
// that another process holds.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	if len(cfg.DBs) > 0 {
		return errors.New("replicating SQLite databases (dbs: in the config) is not implemented yet; only files: inboxes are")
	}
	if len(cfg.Files) == 0 {
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

	replicas := map[string]config.Replica{}
	for _, in := range cfg.Files {
		replicas[in.Replica.Target.String()] = in.Replica
	}
	stores, err := openStores(ctx, replicas, o.Target)
	if err != nil {
		return err
	}

	sp, err := spool.Open(o.FilesSpool, spool.Options{Backoff: o.SpoolBackoff})
	if err != nil {
		return err
	}
	defer sp.Close()
	o.Registry.MustRegister(sp.Collector())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
	)
	fail := func(err error) {
		if err != nil && ctx.Err() == nil {
			errOnce.Do(func() { firstErr = err; cancel() })
		}
	}
	goRun := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail(f(ctx))
		}()
	}

	up := uploader.New(sp, func(ctx context.Context, url string) (objstore.Store, error) {
		if s, ok := stores[url]; ok {
			return s, nil
		}
		// A file pushed to a replica the config does not name ships with
		// the standard credential chain.
		return target.OpenURL(ctx, url, o.Target)
	}, uploader.Options{Log: o.Log})
	goRun(up.Run)
	goRun(func(ctx context.Context) error { return adoptLoop(ctx, sp, o.Log) })
	for _, in := range cfg.Files {
		url := in.Replica.Target.String()
		w := inbox.New(in.Path, func(path, key string) error {
			_, err := uploader.EnqueueFile(sp, path, key, []string{url}, true)
			return err
		}, inbox.Options{Log: o.Log})
		goRun(w.Run)
	}
	mon := spool.NewMonitor(o.FilesSpool, spool.Limits{}, time.Minute, 3, o.Log, o.Registry)
	goRun(func(ctx context.Context) error { mon.Run(ctx); return nil })

	addr := ""
	if cfg.Addr != "" {
		ln, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
		}
		addr = ln.Addr().String()
		srv := &http.Server{Handler: handler(o.Registry), ReadHeaderTimeout: 10 * time.Second}
		goRun(func(ctx context.Context) error {
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	o.Log.Info("ferry is replicating", "inboxes", len(cfg.Files), "spool", o.FilesSpool, "addr", addr)
	if o.Ready != nil {
		o.Ready(addr)
	}
	wg.Wait()
	return firstErr
}

func openStores(ctx context.Context, replicas map[string]config.Replica, o target.Options) (map[string]objstore.Store, error) {
	stores := make(map[string]objstore.Store, len(replicas))
	check := o
	check.Check = true
	for url, r := range replicas {
		s, err := target.Open(ctx, r, check)
		if err != nil {
			return nil, err
		}
		stores[url] = s
	}
	return stores, nil
}

// adoptLoop takes in, every second, the files that `ferry push` handed to
// this daemon's spool.
func adoptLoop(ctx context.Context, sp *spool.Spool, log *slog.Logger) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n, err := sp.Adopt(); err != nil {
				log.Warn("adopting pushed files failed; retrying", "err", err)
			} else if n > 0 {
				log.Debug("adopted pushed files", "count", n)
			}
		}
	}
}

func handler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	return mux
}
