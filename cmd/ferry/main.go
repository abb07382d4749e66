// Command ferry replicates SQLite databases and files to S3-compatible
// object storage through a crash-safe local spool, restores them to any
// committed transaction, and keeps read replicas up to date.
//
// The command line follows Litestream's conventions (single-dash flags,
// -config, -o, -txid, -timestamp, -json) so that its users feel at home.
// Each command lives in its own cmd_*.go file. Exit status is 0 on
// success, 1 when a command fails, and 2 when the command line itself is
// wrong; every failure prints exactly one line on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"modernc.org/sqlite"
)

func main() {
	useOFDLocks()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// useOFDLocks has SQLite lock database files with open file description
// locks, which a descriptor closed elsewhere in the process leaves alone,
// so that snapshots may read a database file directly rather than a page
// at a time through SQLite (see the capture package). To other processes
// they are the same locks. It must run before any database is opened.
// Where the system has no such locks (not Linux), SQLite keeps its POSIX
// locks and ferry reads through SQLite.
func useOFDLocks() {
	if _, err := sqlite.OFDLocking(true); err != nil && !errors.Is(err, sqlite.ErrOFDLockingUnavailable) {
		panic(err) // only a lock taken before main runs makes it too late
	}
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed
	exitUsage = 2 // the command line is wrong in shape
)

// command is one verb of the CLI.
type command interface {
	// Name is the word that selects the command.
	Name() string
	// Summary is the one line shown in 'ferry -h'.
	Summary() string
	// Usage is the synopsis and description shown by 'ferry NAME -h',
	// above the flags.
	Usage() string
	// Run parses args (the words after the command name) and runs.
	Run(ctx context.Context, args []string) error
}

func commands(a *app) []command {
	return []command{
		&replicateCmd{a},
		&restoreCmd{a},
		&snapshotsCmd{a},
		&txidsCmd{a},
		&databasesCmd{a},
		&statusCmd{a},
		&syncCmd{a},
		&verifyCmd{a},
		&gcCmd{a},
		&followCmd{a},
		&pushCmd{a},
		&spoolCmd{a},
		&artifactCmd{a},
		&getCmd{a},
		&keygenCmd{a},
		&versionCmd{a},
	}
}

// run is the whole program with its inputs passed in, so that tests run it
// in-process. It returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := newApp(stdout, stderr)
	global := newFlagSet("ferry")
	global.Func("log-level", "log `LEVEL`: debug, info, warn or error (default info)", a.setLevel)
	global.Func("log-format", "log `FORMAT`: text or json (default text)", a.setFormat)
	switch err := global.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		a.mainUsage(stdout, global)
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "ferry: %s; run 'ferry -h'\n", oneLine(err.Error()))
		return exitUsage
	}
	global.Visit(func(f *flag.Flag) {
		a.levelSet = a.levelSet || f.Name == "log-level"
		a.formatSet = a.formatSet || f.Name == "log-format"
	})

	args = global.Args()
	if len(args) == 0 {
		a.mainUsage(stderr, global)
		return exitUsage
	}
	name, args := args[0], args[1:]
	if name == "help" {
		if len(args) == 0 {
			a.mainUsage(stdout, global)
			return exitOK
		}
		name, args = args[0], []string{"-h"}
	}
	var cmd command
	for _, c := range commands(a) {
		if c.Name() == name {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "ferry: unknown command %q; run 'ferry -h'\n", name)
		return exitUsage
	}
	return a.exit(ctx, cmd, cmd.Run(ctx, args))
}

// childExit ends ferry with the exit code of the application it ran with
// -exec, saying nothing: the application spoke for itself.
type childExit struct{ code int }

func (e *childExit) Error() string { return fmt.Sprintf("application exited with code %d", e.code) }

// exit reports err from cmd on stderr and returns the exit status.
func (a *app) exit(ctx context.Context, cmd command, err error) int {
	var ue *usageError
	var ce *childExit
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &ue):
		help := ue.help
		if help == "" {
			help = "ferry " + cmd.Name() + " -h"
		}
		fmt.Fprintf(a.stderr, "ferry %s: %s; run '%s'\n", cmd.Name(), oneLine(ue.msg), help)
		return exitUsage
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintf(a.stderr, "ferry %s: interrupted\n", cmd.Name())
		return exitFail
	default:
		fmt.Fprintf(a.stderr, "ferry %s: %s\n", cmd.Name(), oneLine(err.Error()))
		return exitFail
	}
}

// oneLine folds a message onto one line. Scripts and log collectors read
// a failure as the single line ferry promises; an error joined from
// several (errors.Join puts each on its own line) would otherwise arrive
// as several unrelated records.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
}

func (a *app) mainUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprint(w, `ferry replicates SQLite databases and files to S3-compatible object storage.

Usage: ferry [-log-level LEVEL] [-log-format FORMAT] COMMAND [ARGS]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, c := range commands(a) {
		fmt.Fprintf(tw, "  %s\t%s\n", c.Name(), c.Summary())
	}
	_ = tw.Flush()
	fmt.Fprint(w, "\nGlobal flags, before the command:\n")
	printDefaults(w, global)
	fmt.Fprint(w, "\nReplica URLs: file:///abs/path or s3://bucket/prefix?endpoint=URL&region=R&force-path-style=true\n")
	fmt.Fprint(w, "Run 'ferry COMMAND -h' for a command's arguments and flags.\n")
}

func (a *app) setLevel(s string) error {
	var l slog.Level
	switch s {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return errors.New("want debug, info, warn or error")
	}
	a.level.Set(l)
	return nil
}

func (a *app) setFormat(s string) error {
	if s != "text" && s != "json" {
		return errors.New("want text or json")
	}
	a.format = s
	a.log = newLogger(a.stderr, a.level, s)
	return nil
}
