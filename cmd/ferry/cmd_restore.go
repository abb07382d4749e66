package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/restore"
	"github.com/ferrydb/ferry/internal/target"
)

type restoreCmd struct{ *app }

func (*restoreCmd) Name() string { return "restore" }
func (*restoreCmd) Summary() string {
	return "restore a database to its latest state or to a past transaction"
}
func (*restoreCmd) Usage() string {
	return `
Usage: ferry restore [-config PATH] [-o OUTPUT] [-txid N | -timestamp RFC3339]
                     [-if-db-not-exists] [-if-replica-exists] [-parallelism N]
                     [-dry-run] [-json] DB_PATH|REPLICA_URL

Restores a database from its replica: to the latest replicated
transaction, or to the one given by -txid or -timestamp. Given DB_PATH,
the replicas come from the config file and the database is written to
DB_PATH unless -o says otherwise; given REPLICA_URL, -o is required.
Every restore is a committed state; if the replica is damaged the restore
stops at the last provable state or fails, naming the object at fault.`
}

// restoreOptions is a parsed restore command line.
type restoreOptions struct {
	from       location
	configPath string // "" when -config was not given
	output     string
	txid       uint64 // with hasTXID
	hasTXID    bool
	at         time.Time // zero when -timestamp was not given

	ifDBNotExists, ifReplicaExists bool
	parallelism                    int
	dryRun, json                   bool
}

func (c *restoreCmd) Run(ctx context.Context, args []string) error {
	opts, err := c.options(args)
	if err != nil {
		return err
	}
	replica, err := c.replicaFor(opts.from, opts.configPath)
	if err != nil {
		return err
	}
	if opts.output == "" {
		opts.output = opts.from.dbPath
	}
	if !opts.dryRun {
		if _, err := os.Lstat(opts.output); err == nil {
			if opts.ifDBNotExists {
				fmt.Fprintf(c.stderr, "ferry restore: %s exists; nothing to do\n", opts.output)
				return nil
			}
			return fmt.Errorf("%s exists; restore never overwrites a database (remove it, or choose another -o)", opts.output)
		}
	}
	store, err := target.Open(ctx, replica, target.Options{Check: true, MustExist: true})
	if err != nil {
		return err
	}
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		return err
	}
	var plan restore.Plan
	switch {
	case !opts.at.IsZero():
		plan, err = cat.PlanTime(opts.at)
	default:
		plan, err = cat.PlanTXID(opts.txid) // 0 means the latest
	}
	if errors.Is(err, restore.ErrNoSnapshot) && opts.ifReplicaExists {
		fmt.Fprintf(c.stderr, "ferry restore: %s holds nothing to restore; nothing to do\n", replica.Target)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", replica.Target, err)
	}
	if opts.dryRun {
		return c.printPlan(plan, opts)
	}
	bar := newProgress(c.stderr, int64(len(plan.Segments)), "applying segments")
	res, err := restore.ToFile(ctx, store, plan, opts.output, restore.Options{
		Parallelism: opts.parallelism,
		Before:      opts.at,
		Progress:    func(int, int) { bar.add(1) },
	})
	bar.finish()
	var stopped *restore.StoppedError
	if errors.As(err, &stopped) && stopped.TXID < plan.TXID {
		return fmt.Errorf("%w; nothing was written: 'ferry restore -txid %d' restores that last provable state", err, stopped.TXID)
	}
	if err != nil {
		return err
	}
	if opts.json {
		return writeJSON(c.stdout, res)
	}
	fmt.Fprintf(c.stdout, "restored %s to txid %d (committed %s) into %s\n", replica.Target, res.TXID, res.Time.Format(time.RFC3339Nano), opts.output)
	return nil
}

func (c *restoreCmd) printPlan(plan restore.Plan, opts restoreOptions) error {
	if opts.json {
		return writeJSON(c.stdout, plan)
	}
	fmt.Fprintf(c.stdout, "snapshot %s (txid %d, %s, %d bytes)\n", plan.Snapshot.Key, plan.Snapshot.TXID, plan.Snapshot.Time.Format(time.RFC3339), plan.Snapshot.Size)
	for _, s := range plan.Segments {
		fmt.Fprintf(c.stdout, "segment  %s (txids %d-%d, %d bytes)\n", s.Key, s.First, s.Last, s.Size)
	}
	if opts.at.IsZero() {
		fmt.Fprintf(c.stdout, "ends at txid %d\n", plan.TXID)
	} else {
		fmt.Fprintf(c.stdout, "ends at the last transaction committed at or before %s (at most txid %d)\n", opts.at.Format(time.RFC3339Nano), plan.TXID)
	}
	return nil
}

// replicaFor returns the replica a DB_PATH|REPLICA_URL argument names: the
// URL itself, or the first replica of the database in the config.
func (a *app) replicaFor(from location, configPath string) (config.Replica, error) {
	if from.isURL {
		return config.Replica{Target: from.target}, nil
	}
	path, explicit := configPath, configPath != ""
	if !explicit {
		path = config.DefaultPath
	}
	cfg, err := a.loadConfig(path, explicit)
	if err != nil {
		return config.Replica{}, err
	}
	db, ok := cfg.DB(from.dbPath)
	if !ok {
		return config.Replica{}, fmt.Errorf("database %s is not in %s", from.dbPath, cfg.Source)
	}
	return db.Replicas[0], nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *restoreCmd) options(args []string) (restoreOptions, error) {
	var o restoreOptions
	fs := newFlagSet("restore")
	fs.StringVar(&o.configPath, "config", "", "read the config file at `PATH`")
	fs.StringVar(&o.output, "o", "", "write the database to `OUTPUT` (default DB_PATH)")
	fs.Func("txid", "restore up to and including transaction `N` (decimal, or hex with 0x)", func(s string) (err error) {
		o.txid, err = parseTXID(s)
		o.hasTXID = err == nil
		return err
	})
	fs.Func("timestamp", "restore the last transaction committed at or before `RFC3339` time", func(s string) (err error) {
		o.at, err = time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("want an RFC 3339 time such as 2006-01-02T15:04:05Z")
		}
		return nil
	})
	fs.BoolVar(&o.ifDBNotExists, "if-db-not-exists", false, "do nothing, successfully, if the output database exists")
	fs.BoolVar(&o.ifReplicaExists, "if-replica-exists", false, "do nothing, successfully, if no replica has data to restore")
	fs.IntVar(&o.parallelism, "parallelism", 8, "fetch `N` objects at a time")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print what would be restored and from where; write nothing")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return o, err
	}
	set := setFlags(fs)
	switch {
	case set["txid"] && set["timestamp"]:
		return o, usagef("-txid and -timestamp exclude each other")
	case o.parallelism < 1:
		return o, usagef("-parallelism must be at least 1")
	case set["o"] && o.output == "":
		return o, usagef("-o needs a path")
	case set["config"] && o.configPath == "":
		return o, usagef("-config needs a path")
	case fs.NArg() != 1:
		return o, usagef("want one DB_PATH or REPLICA_URL, got %d arguments", fs.NArg())
	}
	var err error
	if o.from, err = parseLocation(fs.Arg(0)); err != nil {
		return o, err
	}
	if o.from.isURL && o.output == "" && !o.dryRun {
		return o, usagef("restoring from a replica URL needs -o OUTPUT")
	}
	if o.output != "" {
		if o.output, err = filepath.Abs(o.output); err != nil {
			return o, err
		}
	}
	return o, nil
}

// parseTXID reads a transaction ID as printed by 'ferry txids' (decimal)
// or as it appears in object names (hex, written here with 0x).
func parseTXID(s string) (uint64, error) {
	var n uint64
	var err error
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		n, err = strconv.ParseUint(h, 16, 64)
	} else {
		n, err = strconv.ParseUint(s, 10, 64)
	}
	if err != nil {
		return 0, fmt.Errorf("want a transaction ID such as 1234 or 0x4d2")
	}
	return n, nil
}
