package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/config"
)

// app is what every command shares: where output goes and the logger.
type app struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	level          *slog.LevelVar
	format         string
	// levelSet and formatSet record that the command line chose the
	// logging, which then wins over a config file's log-level and
	// log-format.
	levelSet, formatSet bool
}

func newApp(stdout, stderr io.Writer) *app {
	a := &app{stdout: stdout, stderr: stderr, level: new(slog.LevelVar), format: "text"}
	a.log = newLogger(stderr, a.level, a.format)
	return a
}

func newLogger(w io.Writer, level slog.Leveler, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

var (
	// errHelp ends a command that printed its usage for -h; it exits 0.
	errHelp = errors.New("help requested")
)

// usageError is a command line that is wrong in shape: an unknown flag, a
// flag value of the wrong type, a missing or extra argument. It exits 2,
// where an argument of the right shape naming something wrong (a replica
// URL that does not parse, a config file with an error) exits 1.
type usageError struct {
	msg  string
	help string // the command that shows the usage; "" for 'ferry NAME -h'
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// newFlagSet returns a flag set that reports errors instead of printing
// them, so that each failure is the one line the caller prints.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args into fs; for -h it prints usage and the flags to
// stdout and returns errHelp.
func (a *app) parse(fs *flag.FlagSet, usage string, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(a.stdout, strings.TrimSpace(usage))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(a.stdout, "\nFlags:\n")
			printDefaults(a.stdout, fs)
		}
		return errHelp
	}
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	return nil
}

func printDefaults(w io.Writer, fs *flag.FlagSet) {
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// setFlags returns the names of the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	m := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}

// loadConfig loads the config at path; explicit says whether the user
// named it with -config or it is the default. A config's log-level and
// log-format apply unless the command line set them.
func (a *app) loadConfig(path string, explicit bool) (*config.Config, error) {
	c, err := config.Load(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no config file at %s; pass -config PATH", path)
		}
		return nil, err
	}
	if c.LogLevel != "" && !a.levelSet {
		_ = a.setLevel(c.LogLevel)
	}
	if c.LogFormat != "" && !a.formatSet {
		_ = a.setFormat(c.LogFormat)
	}
	a.log.Debug("loaded config", "path", path, "dbs", len(c.DBs), "files", len(c.Files))
	return c, nil
}

// configOf loads the config -config names in fs (parsed, with configFlag
// giving cfgPath), or the default one.
func (a *app) configOf(fs *flag.FlagSet, cfgPath string) (*config.Config, error) {
	set := setFlags(fs)
	if set["config"] && cfgPath == "" {
		return nil, usagef("-config needs a path")
	}
	path := cfgPath
	if !set["config"] {
		path = config.DefaultPath
	}
	return a.loadConfig(path, set["config"])
}

// configFlag adds -config to fs.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "read the config file at `PATH` (default "+config.DefaultPath+")")
}

var urlLike = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://|^(?i:file|s3):`)

// isURL reports whether a DB_PATH|REPLICA_URL argument is meant as a URL.
// A path can hold "://" only by a very odd choice of names, and a
// misspelt URL is better met with the URL parser's message than with
// "database not found".
func isURL(arg string) bool { return urlLike.MatchString(arg) }

// location is what a DB_PATH|REPLICA_URL argument names.
type location struct {
	dbPath string        // absolute path, when the argument is a path
	target config.Target // when the argument is a URL
	isURL  bool
}

func parseLocation(arg string) (location, error) {
	if isURL(arg) {
		t, err := config.ParseURL(arg)
		if err != nil {
			return location{}, err
		}
		return location{target: t, isURL: true}, nil
	}
	p, err := dbPath(arg)
	return location{dbPath: p}, err
}

// dbPath makes a database path argument absolute.
func dbPath(arg string) (string, error) {
	if arg == "" {
		return "", usagef("empty database path")
	}
	p, err := filepath.Abs(arg)
	if err != nil {
		return "", fmt.Errorf("database path %q: %w", arg, err)
	}
	return p, nil
}

// replicaURL parses an argument that must be a replica URL.
func replicaURL(arg string) (config.Target, error) {
	if !isURL(arg) {
		return config.Target{}, fmt.Errorf("%q is not a replica URL; expected file:///abs/path or s3://bucket/prefix", arg)
	}
	return config.ParseURL(arg)
}

// keyURL parses a REPLICA_URL/KEY argument: a replica URL that names an
// object under the replica's root.
func keyURL(arg string) (config.Target, error) {
	t, err := replicaURL(arg)
	if err != nil {
		return t, err
	}
	if (t.Scheme == "s3" && t.Prefix == "") || (t.Scheme == "file" && t.Path == "/") {
		return t, fmt.Errorf("replica URL %q names no key; expected REPLICA_URL/KEY", arg)
	}
	return t, nil
}

// existing checks that an input path exists, so that a typo fails at once
// with the path in the message. want is "", "file" or "directory".
func existing(path, want string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	switch {
	case want == "directory" && !fi.IsDir():
		return fmt.Errorf("%s is not a directory", path)
	case want == "file" && fi.IsDir():
		return fmt.Errorf("%s is a directory, not a file", path)
	}
	return nil
}

// oneLocation checks that fs has exactly one DB_PATH|REPLICA_URL argument
// left and parses it.
func oneLocation(fs *flag.FlagSet) (location, error) {
	if fs.NArg() != 1 {
		return location{}, usagef("want one DB_PATH or REPLICA_URL, got %d arguments", fs.NArg())
	}
	return parseLocation(fs.Arg(0))
}

// replicaSet is the replicas that a DB_PATH|REPLICA_URL argument names,
// in the order to try them, and where they were found.
type replicaSet struct {
	db       string // "" when the argument is a URL
	replicas []config.Replica
	source   string // the config file or the daemon they came from
	// retention is the database's retention in the config, 0 when not
	// known from one.
	retention time.Duration
}

// replicasOf finds the replicas of what a DB_PATH|REPLICA_URL argument
// names: a URL names itself; a DB_PATH's replicas come from findReplicas.
// choose, when not empty, is a -replica URL that picks one of them. keys,
// when given with -key-file, replace any the config has for them.
func (a *app) replicasOf(ctx context.Context, from location, configPath, choose string, keys *keyFiles) (replicaSet, error) {
	ring, err := keys.ring()
	if err != nil {
		return replicaSet{}, usagef("-key-file: %v", err)
	}
	if from.isURL {
		if choose != "" {
			return replicaSet{}, usagef("-replica picks one of the replicas of a DB_PATH; given a REPLICA_URL, it is not needed")
		}
		return replicaSet{replicas: []config.Replica{{Target: from.target, Keys: ring}}}, nil
	}
	set, err := a.findReplicas(ctx, from.dbPath, configPath)
	if err != nil {
		return set, err
	}
	if ring != nil {
		for i := range set.replicas {
			set.replicas[i].Keys = ring
		}
	}
	if choose == "" {
		return set, nil
	}
	want, err := replicaURL(choose)
	if err != nil {
		return set, err
	}
	var urls []string
	for _, r := range set.replicas {
		if r.Target.String() == want.String() {
			set.replicas = []config.Replica{r}
			return set, nil
		}
		urls = append(urls, r.Target.String())
	}
	return set, fmt.Errorf("-replica %s is not a replica of %s; %s lists %s", want, set.db, set.source, strings.Join(urls, ", "))
}

// findReplicas finds the replicas of the database at dbPath, the same way
// for every command that takes a DB_PATH: from the config file given with
// -config; else from the default config file when it lists the database;
// else from the daemon replicating it, which answers on the control socket
// beside it. A daemon started as 'ferry replicate DB_PATH URL' has no
// config file to read, and its targets are known only to it.
func (a *app) findReplicas(ctx context.Context, dbPath, configPath string) (replicaSet, error) {
	set := replicaSet{db: dbPath}
	if configPath != "" {
		cfg, err := a.loadConfig(configPath, true)
		if err != nil {
			return set, err
		}
		db, ok := cfg.DB(dbPath)
		if !ok {
			return set, fmt.Errorf("database %s is not in %s", dbPath, cfg.Source)
		}
		set.replicas, set.source, set.retention = db.Replicas, cfg.Source, db.Retention
		return set, nil
	}
	why := "no config file at " + config.DefaultPath
	if _, err := os.Stat(config.DefaultPath); err == nil {
		cfg, err := a.loadConfig(config.DefaultPath, true)
		if err != nil {
			return set, err
		}
		if db, ok := cfg.DB(dbPath); ok {
			set.replicas, set.source, set.retention = db.Replicas, cfg.Source, db.Retention
			return set, nil
		}
		why = cfg.Source + " does not list it"
	}
	// A daemon that has its socket up answers at once; one that does not
	// answer in this time is as good as not there.
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	rep, err := newControlClient(dbPath).status(qctx)
	cancel()
	if err != nil {
		return set, fmt.Errorf("cannot tell where %s is replicated: %s, and %v; pass -config PATH, or a REPLICA_URL in place of DB_PATH", dbPath, why, err)
	}
	for _, db := range rep.DBs {
		if db.DB != dbPath && len(rep.DBs) > 1 {
			continue
		}
		for _, t := range db.Targets {
			target, err := config.ParseURL(t.URL)
			if err != nil {
				return set, fmt.Errorf("the daemon replicating %s reports target %w", dbPath, err)
			}
			set.replicas = append(set.replicas, config.Replica{Target: target})
		}
	}
	if len(set.replicas) == 0 {
		return set, fmt.Errorf("the daemon answering on %s reports no replica of %s", newControlClient(dbPath).socket, dbPath)
	}
	set.source = "the running daemon"
	return set, nil
}

// withHelp points a usage error at a subcommand's help.
func withHelp(err error, help string) error {
	if ue, ok := err.(*usageError); ok {
		return &usageError{msg: ue.msg, help: help}
	}
	return err
}
