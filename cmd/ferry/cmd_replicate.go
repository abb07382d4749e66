package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
)

type replicateCmd struct{ *app }

func (*replicateCmd) Name() string { return "replicate" }
func (*replicateCmd) Summary() string {
	return "replicate databases and file inboxes continuously (the daemon)"
}
func (*replicateCmd) Usage() string {
	return `
Usage: ferry replicate [-config PATH] [-exec CMD] [-lease TTL] [-shutdown-timeout D]
                       [-restore-if-db-not-exists] [-key-file PATH]... [DB_PATH REPLICA_URL...]

Replicates every database and file inbox in the config file, or, given
DB_PATH and one or more REPLICA_URLs, that one database to those replicas,
until interrupted. With -exec, runs CMD as a child process and stops when
it exits.

On SIGTERM or SIGINT, or when the -exec child exits, ferry captures what
was committed, ships it, and waits up to the shutdown timeout (30s, or
shutdown-timeout: in the config) for every target to hold it; it exits
non-zero if one still lacks something, which then stays in the spool.
On SIGHUP, ferry reads the config file again: databases and directories
added start, removed ones stop once what they captured is shipped,
changed ones start again, and the others go on untouched; settings
outside dbs take effect at the next start. A file that does not load is
logged and the running config goes on. (With -exec, the child gets the
SIGHUP too.)

A dbs entry with dir: DIRECTORY replicates every SQLite database in WAL
mode under it (pattern:, default *.db; recursive:; watch: to pick up new
databases and stop vanished ones), each to REPLICA_URL/<relative path>.
Such a database is let go once it has been quiet for 10s with everything
shipped, and woken when its log is written: thousands of idle databases
cost no goroutine, connection or descriptor each.

With -restore-if-db-not-exists (or restore-if-db-not-exists: true for a
database in the config), a database file that is missing is first
restored from the first of its replicas that holds one, and replication
carries that history on; when every replica is empty, ferry waits for the
application to create the database.

With -lease TTL (or lease: TTL for a database in the config), ferry
holds a lease on every replica, renewed every TTL/3: a second ferry that
would write to the same replica refuses to start, naming the holder, and
a ferry whose lease was taken over stops without writing again. While
the store is unreachable and the lease runs out, uploads wait.

A store that does not answer at start (connection refused, a timeout, a
5xx) is logged and retried while the databases are captured into the
spool; a missing bucket or refused credentials stop the start.

Replica URLs: file:///abs/path or
s3://bucket/prefix?endpoint=URL&region=R&force-path-style=true`
}

func (c *replicateCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("replicate")
	cfgPath := configFlag(fs)
	execCmd := fs.String("exec", "", "run `CMD` as a child process; stop replicating when it exits")
	restoreMissing := fs.Bool("restore-if-db-not-exists", false, "restore a missing database from its replicas before replicating it")
	leaseTTL := fs.Duration("lease", 0, "hold a lease of `TTL` on every replica so that no other ferry writes to it (at least 3s)")
	shutdown := fs.Duration("shutdown-timeout", 0, "on stop, wait up to `D` for every target to hold what was committed (default 30s, or shutdown-timeout: in the config)")
	keys := keyFlag(fs, "encrypt everything stored with it; with DB_PATH REPLICA_URL...")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	set := setFlags(fs)
	if set["exec"] && *execCmd == "" {
		return usagef("-exec needs a command")
	}
	if set["config"] && *cfgPath == "" {
		return usagef("-config needs a path")
	}
	if set["shutdown-timeout"] && *shutdown <= 0 {
		return usagef("-shutdown-timeout needs a positive duration such as 30s")
	}
	if set["lease"] && *leaseTTL < config.MinLease {
		return usagef("-lease needs a duration of at least %s, such as 30s", config.MinLease)
	}
	var cfg *config.Config
	// cfgFile is the config file read, which SIGHUP reads again; empty for
	// a database given on the command line.
	cfgFile := ""
	if fs.NArg() > 0 {
		if set["config"] {
			return usagef("give either -config or DB_PATH REPLICA_URL..., not both")
		}
		if fs.NArg() < 2 {
			return usagef("DB_PATH needs at least one REPLICA_URL")
		}
		db, err := dbPath(fs.Arg(0))
		if err != nil {
			return err
		}
		ring, err := keys.ring()
		if err != nil {
			return usagef("-key-file: %v", err)
		}
		var replicas []config.Replica
		for _, arg := range fs.Args()[1:] {
			t, err := replicaURL(arg)
			if err != nil {
				return err
			}
			replicas = append(replicas, config.Replica{Target: t, Keys: ring})
		}
		if !*restoreMissing {
			if err := existing(db, "file"); err != nil {
				return err
			}
		}
		cfg = &config.Config{Source: "the command line",
			HealthzMaxLag: config.DefaultHealthzMaxLag, ShutdownTimeout: config.DefaultShutdownTimeout,
			DBs: []config.DB{{
				Path: db, Replicas: replicas,
				SyncInterval: config.DefaultSyncInterval, SnapshotInterval: config.DefaultSnapshotInterval,
				MaxSpoolBytes: config.DefaultMaxSpoolBytes,
				Retention:     config.DefaultRetention, GCInterval: config.DefaultGCInterval,
				ScrubInterval: config.DefaultScrubInterval,
			}}}
	}
	if cfg == nil {
		if set["key-file"] {
			return usagef("-key-file goes with DB_PATH REPLICA_URL...; with a config file, give the keys under encryption:")
		}
		path := *cfgPath
		if !set["config"] {
			path = config.DefaultPath
		}
		var err error
		if cfg, err = c.loadConfig(path, set["config"]); err != nil {
			return err
		}
		cfgFile = path
	}
	if set["shutdown-timeout"] {
		cfg.ShutdownTimeout = *shutdown
	}
	// The flags apply to every config SIGHUP loads too.
	override := func(cfg *config.Config) error {
		for _, db := range cfg.DBs {
			if db.Dir != nil && (set["lease"] || *restoreMissing) {
				return usagef("-lease and -restore-if-db-not-exists are for databases listed by path; %s has a dir entry, %s", cfg.Source, db.Name())
			}
		}
		for i := range cfg.DBs {
			if set["lease"] {
				cfg.DBs[i].Lease = *leaseTTL
			}
			if *restoreMissing {
				cfg.DBs[i].RestoreIfNotExists = true
			}
		}
		return nil
	}
	if err := override(cfg); err != nil {
		return err
	}
	var reload <-chan *config.Config
	if cfgFile != "" {
		reload = c.reloadOnHangup(ctx, cfgFile, override)
	}
	return c.daemon(ctx, cfg, *execCmd, reload)
}

// reloadOnHangup reads the config file at path again at each SIGHUP and
// hands it on, until ctx ends. A file that no longer parses is logged,
// and the running config goes on.
func (c *replicateCmd) reloadOnHangup(ctx context.Context, path string, override func(*config.Config) error) <-chan *config.Config {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	out := make(chan *config.Config)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			cfg, err := config.Load(path)
			if err == nil {
				err = override(cfg)
			}
			if err != nil {
				c.log.Error("SIGHUP: the config does not load; going on with the running one", "err", err)
				continue
			}
			select {
			case out <- cfg:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// daemon runs the daemon for cfg, with the application as a child when
// execCmd is set.
func (c *replicateCmd) daemon(ctx context.Context, cfg *config.Config, execCmd string, reload <-chan *config.Config) error {
	root, err := spoolRoot("", cfg.Spool)
	if err != nil {
		return err
	}
	// The command opens no database itself while the daemon runs (an
	// -exec application is another process).
	opts := daemon.Options{FilesSpool: filesSpool(root), Log: c.log, Reload: reload,
		Capture: capture.Options{AloneInProcess: true}}
	if execCmd == "" {
		return daemon.Run(ctx, cfg, opts)
	}
	child := daemon.Child{Command: execCmd}
	code, err := child.Run(ctx, func(ctx context.Context) error { return daemon.Run(ctx, cfg, opts) })
	if err != nil {
		return err
	}
	return &childExit{code: code}
}
