package main

import (
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

	// errNotImplemented is what the commands not built yet return once
	// their arguments have been checked.
	errNotImplemented = errors.New("not implemented yet")
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

// withHelp points a usage error at a subcommand's help.
func withHelp(err error, help string) error {
	if ue, ok := err.(*usageError); ok {
		return &usageError{msg: ue.msg, help: help}
	}
	return err
}
