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
	"github.com/ferrydb/ferry/internal/objstore"
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
Usage: ferry restore [-config PATH] [-replica URL] [-o OUTPUT] [-txid N | -timestamp RFC3339]
                     [-if-db-not-exists] [-if-replica-exists] [-parallelism N]
                     [-dry-run] [-json] [-key-file PATH]... DB_PATH|REPLICA_URL

Restores a database from its replica: to the latest replicated
transaction, or to the one given by -txid or -timestamp. Given REPLICA_URL,
-o is required. Given DB_PATH, the database is written to DB_PATH unless
-o says otherwise, from the first of its replicas that answers and holds
data (stderr says which, and why others were skipped), or from the one
-replica names. The replicas of DB_PATH come from -config, else from
` + config.DefaultPath + ` when it lists DB_PATH, else from the running daemon
that replicates DB_PATH.

-txid takes a txid in decimal, as 'ferry txids' prints it (1234), or in
hexadecimal with 0x (0x4d2). A zero-padded value such as the 16 hex digits
of object names (00000000000004d2) is refused as ambiguous. Txids start
at 1; leave -txid out for the latest state.

Every restore is a committed state; if the replica is damaged the restore
stops at the last provable state or fails, naming the object at fault.`
}

// restoreOptions is a parsed restore command line.
type restoreOptions struct {
	from       location
	configPath string // "" when -config was not given
	replica    string // -replica, "" when not given
	output     string
	txid       uint64 // with hasTXID
	hasTXID    bool
	at         time.Time // zero when -timestamp was not given

	ifDBNotExists, ifReplicaExists bool
	parallelism                    int
	dryRun, json                   bool
	keys                           *keyFiles
}

func (c *restoreCmd) Run(ctx context.Context, args []string) error {
	opts, err := c.options(args)
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
	set, err := c.replicasOf(ctx, opts.from, opts.configPath, opts.replica, opts.keys)
	if err != nil {
		return err
	}
	src, err := c.firstUsable(ctx, "restore", "restoring from", set)
	if err != nil {
		return err
	}
	var plan restore.Plan
	switch {
	case !opts.at.IsZero():
		plan, err = src.cat.PlanTime(opts.at)
	default:
		plan, err = src.cat.PlanTXID(opts.txid) // 0 means the latest
	}
	if errors.Is(err, restore.ErrNoSnapshot) {
		what := src.replica.Target.String()
		if len(set.replicas) > 1 {
			what = fmt.Sprintf("each of the %d replicas of %s", len(set.replicas), set.db)
		}
		if opts.ifReplicaExists {
			fmt.Fprintf(c.stderr, "ferry restore: %s holds nothing to restore; nothing to do\n", what)
			return nil
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if err != nil {
		return restoreFailed(src, err)
	}
	if opts.dryRun {
		return c.printPlan(plan, opts)
	}
	bar := newProgress(c.stderr, int64(len(plan.Segments)), "applying segments")
	res, err := restore.ToFile(ctx, src.store, plan, opts.output, restore.Options{
		Parallelism: opts.parallelism,
		Before:      opts.at,
		Progress:    func(int, int) { bar.add(1) },
		Keys:        src.replica.Keys.Keys(),
	})
	bar.finish()
	if err != nil {
		return restoreFailed(src, err)
	}
	if opts.json {
		return writeJSON(c.stdout, res)
	}
	fmt.Fprintf(c.stdout, "restored %s to txid %d (committed %s) into %s\n", src.replica.Target, res.TXID, res.Time.Format(time.RFC3339Nano), opts.output)
	return nil
}

// restoreFailed names the replica a restore failed on and, when the
// replica still proves an earlier state, says how to restore that one.
func restoreFailed(src source, err error) error {
	var stopped *restore.StoppedError
	if errors.As(err, &stopped) && stopped.TXID > 0 {
		return fmt.Errorf("%s: %w; nothing was written: 'ferry restore -txid %d' restores that last provable state", src.replica.Target, err, stopped.TXID)
	}
	return fmt.Errorf("%s: %w", src.replica.Target, err)
}

func (c *restoreCmd) printPlan(plan restore.Plan, opts restoreOptions) error {
	if opts.json {
		if plan.Segments == nil {
			plan.Segments = []restore.SegmentRef{} // a list, even when empty
		}
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

// source is a replica opened and listed.
type source struct {
	replica config.Replica
	store   objstore.Store
	cat     restore.Catalog
}

func openSource(ctx context.Context, r config.Replica) (source, error) {
	store, err := target.Open(ctx, r, target.Options{Check: true, MustExist: true})
	if err != nil {
		return source{}, err
	}
	cat, err := restore.ReadCatalog(ctx, store)
	if err != nil {
		return source{}, fmt.Errorf("%s: %w", r.Target, err)
	}
	return source{replica: r, store: store, cat: cat}, nil
}

// firstUsable opens the replicas of set in order, and lists each, until
// one answers and holds something; with a DB_PATH it says on stderr which
// it took (doing names what it does with it) and why it skipped the
// others. A replica that is down or empty must not stop a restore that
// another replica of the same database can serve. A lone replica is taken
// whatever it holds, so that its own failure is the one reported; so is
// the first when all are empty, so that the caller reports an empty
// replica as it would a lone one.
func (a *app) firstUsable(ctx context.Context, cmd, doing string, set replicaSet) (source, error) {
	n := len(set.replicas)
	var skipped []string
	var empty []source
	for i, r := range set.replicas {
		src, err := openSource(ctx, r)
		switch {
		case n == 1 && err != nil:
			return src, err
		case err != nil:
			skipped = append(skipped, fmt.Sprintf("replica %d of %d is unreachable: %v", i+1, n, err))
			continue
		case n > 1 && src.cat.Empty():
			skipped = append(skipped, fmt.Sprintf("replica %d of %d is empty: %s holds no snapshot and no change set", i+1, n, r.Target))
			empty = append(empty, src)
			continue
		}
		if set.db != "" {
			for _, s := range skipped {
				fmt.Fprintf(a.stderr, "ferry %s: skipped: %s\n", cmd, s)
			}
			fmt.Fprintf(a.stderr, "ferry %s: %s replica %d of %d of %s (from %s): %s\n", cmd, doing, i+1, n, set.db, set.source, r.Target)
		}
		return src, nil
	}
	if len(empty) == n {
		return empty[0], nil
	}
	return source{}, fmt.Errorf("no replica of %s could be used: %s", set.db, strings.Join(skipped, "; "))
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Replica URLs carry & between their parameters; HTML escaping
	// would print it as \u0026.
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func (c *restoreCmd) options(args []string) (restoreOptions, error) {
	var o restoreOptions
	fs := newFlagSet("restore")
	fs.StringVar(&o.configPath, "config", "", "read the config file at `PATH`")
	fs.StringVar(&o.replica, "replica", "", "restore from the replica of DB_PATH at `URL`, not the first that answers")
	fs.StringVar(&o.output, "o", "", "write the database to `OUTPUT` (default DB_PATH)")
	fs.Func("txid", "restore up to and including transaction `N`: decimal as 'ferry txids' prints it, or hex with 0x", func(s string) (err error) {
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
	o.keys = keyFlag(fs, "for an encrypted replica")
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
	case set["replica"] && o.replica == "":
		return o, usagef("-replica needs a URL")
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

// parseTXID reads a -txid value. The rule: decimal, the form 'ferry txids'
// and every message print; or hexadecimal after an explicit 0x, the form
// of object names. A zero-padded value is refused: object names write
// txids as 16 zero-padded hex digits, and 0000000000000010 read as decimal
// 10 would restore a different state from the txid 16 its object holds.
// Zero is refused too: txids start at 1, and a 0 taken for "the latest"
// would quietly restore something newer than asked.
func parseTXID(s string) (uint64, error) {
	const hint = "want a transaction ID such as 1234 (decimal, as 'ferry txids' prints it) or 0x4d2 (hexadecimal)"
	isHex := s != "" && strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
	var n uint64
	var err error
	switch h, ok := cutHexPrefix(s); {
	case ok:
		n, err = strconv.ParseUint(h, 16, 64)
	case isHex && len(s) > 1 && s[0] == '0' && strings.Trim(s, "0") != "":
		n, err := strconv.ParseUint(s, 16, 64)
		if err != nil {
			return 0, fmt.Errorf("%s does not fit in 64 bits", s)
		}
		if d, derr := strconv.ParseUint(s, 10, 64); derr == nil {
			return 0, fmt.Errorf("zero-padded txids are ambiguous: object names write txid 0x%x (%d in decimal) this way, while 'ferry txids' prints decimal; write -txid 0x%x, or -txid %d for decimal", n, n, n, d)
		}
		return 0, fmt.Errorf("zero-padded txids are ambiguous: object names write txid 0x%x (%d in decimal) this way; write -txid 0x%x or -txid %d", n, n, n, n)
	case isHex && strings.Trim(strings.ToLower(s), "0123456789") != "":
		return 0, fmt.Errorf("%s; if %s is hexadecimal, write 0x%s", hint, s, s)
	default:
		n, err = strconv.ParseUint(s, 10, 64)
	}
	var ne *strconv.NumError
	switch {
	case errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange):
		return 0, fmt.Errorf("%s does not fit in 64 bits", s)
	case err != nil:
		return 0, errors.New(hint)
	case n == 0:
		return 0, errors.New("txid 0 names no transaction: txids start at 1 (leave -txid out to restore the latest state)")
	}
	return n, nil
}

func cutHexPrefix(s string) (string, bool) {
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		return s[2:], true
	}
	return "", false
}
