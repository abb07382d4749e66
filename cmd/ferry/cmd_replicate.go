package main

import (
	"context"
	iofs "io/fs"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
	"github.com/ferrydb/ferry/internal/spool"
)

type replicateCmd struct{ *app }

func (*replicateCmd) Name() string { return "replicate" }
func (*replicateCmd) Summary() string {
	return "replicate databases and file inboxes continuously (the daemon)"
}
func (*replicateCmd) Usage() string {
	return `
Usage: ferry replicate [-config PATH] [-exec CMD] [DB_PATH REPLICA_URL...]

Replicates every database and file inbox in the config file, or, given
DB_PATH and one or more REPLICA_URLs, that one database to those replicas,
until interrupted. With -exec, runs CMD as a child process and stops when
it exits, after replicating what it committed.

Replica URLs: file:///abs/path or
s3://bucket/prefix?endpoint=URL&region=R&force-path-style=true`
}

func (c *replicateCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("replicate")
	cfgPath := configFlag(fs)
	execCmd := fs.String("exec", "", "run `CMD` as a child process; stop replicating when it exits")
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
	var cfg *config.Config
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
		var replicas []config.Replica
		for _, arg := range fs.Args()[1:] {
			t, err := replicaURL(arg)
			if err != nil {
				return err
			}
			replicas = append(replicas, config.Replica{Target: t})
		}
		if err := existing(db, "file"); err != nil {
			return err
		}
		cfg = &config.Config{Source: "the command line", DBs: []config.DB{{
			Path: db, Replicas: replicas,
			SyncInterval: config.DefaultSyncInterval, SnapshotInterval: config.DefaultSnapshotInterval,
			Retention: config.DefaultRetention, MaxSpoolBytes: config.DefaultMaxSpoolBytes,
		}}}
	}
	if cfg == nil {
		path := *cfgPath
		if !set["config"] {
			path = config.DefaultPath
		}
		var err error
		if cfg, err = c.loadConfig(path, set["config"]); err != nil {
			return err
		}
	}
	return c.daemon(ctx, cfg, *execCmd)
}

// daemon runs the daemon for cfg, with the application as a child when
// execCmd is set.
func (c *replicateCmd) daemon(ctx context.Context, cfg *config.Config, execCmd string) error {
	root, err := spoolRoot("", cfg.Spool)
	if err != nil {
		return err
	}
	opts := daemon.Options{FilesSpool: filesSpool(root), Log: c.log}
	if execCmd == "" {
		return daemon.Run(ctx, cfg, opts)
	}
	child := daemon.Child{Command: execCmd, FlushTimeout: 30 * time.Second, Drained: func() bool {
		return filesDrained(opts.FilesSpool, cfg.Files) && dbsDrained(cfg)
	}}
	code, err := child.Run(ctx, func(ctx context.Context) error { return daemon.Run(ctx, cfg, opts) })
	if err != nil {
		return err
	}
	return &childExit{code: code}
}

// filesDrained reports whether every inbox is empty and the files spool
// holds nothing: all that was handed to ferry is in its targets.
func filesDrained(spoolDir string, inboxes []config.Inbox) bool {
	rep, err := spool.Check(spoolDir, spool.Limits{}, time.Now())
	if err != nil || rep.Entries > 0 {
		return false
	}
	for _, in := range inboxes {
		found := false
		filepath.WalkDir(in.Path, func(_ string, d iofs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				found = true
				return filepath.SkipAll
			}
			return nil
		})
		if found {
			return false
		}
	}
	return true
}
