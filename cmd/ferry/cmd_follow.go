package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/follow"
)

type followCmd struct{ *app }

func (*followCmd) Name() string { return "follow" }
func (*followCmd) Summary() string {
	return "keep a read replica of a database up to date from its replica"
}
func (*followCmd) Usage() string {
	return `
Usage: ferry follow [-interval D] [-addr ADDR] [-healthz-max-lag D] [-key-file PATH]...
                    [-standby [-lease TTL] [-exec CMD]] REPLICA_URL DB_PATH

Restores the newest state of the database in REPLICA_URL to DB_PATH, then
applies each new transaction as it appears in the replica, until
interrupted. Applications may read DB_PATH at any time, with any SQLite:
they only ever see committed states of the source, each a whole
transaction, and are never blocked by the follower. Nothing else may
write to DB_PATH: each transaction applied assumes it holds exactly the
state the follower left.

The txid DB_PATH holds is recorded in DB_PATH-ferry-follow after each
transaction, so a restart, even after kill -9 or a power loss, carries on
from where it stopped without a full restore. A database whose record is
missing or does not match (another replica, a page size changed, PRAGMA
quick_check fails) is restored anew. When the replica no longer holds
the change sets the follower needs (retention removed them, a gap), the
follower restores the newest state in one step and logs it at WARN.

With -addr, serves GET /status (JSON), /metrics (Prometheus) and
/healthz, which answers 503 when the lag, or a failure, lasts longer
than -healthz-max-lag.

An encrypted replica needs its key: -key-file PATH, repeated for the old
keys of a rotation.

With -standby, the follower also watches the lease of the primary (which
must run 'ferry replicate -lease TTL'). Once that lease has lapsed (the
primary died, or lost the store for longer than its TTL), the standby
takes the lease with a conditional write, so that of several standbys
exactly one wins, applies the last change sets, and becomes the primary:
it replicates DB_PATH on as the same history (the txids go on, no new
snapshot), holding the lease for -lease TTL (default 30s), and starts
-exec CMD, if given, only then. A primary that finds its lease taken
stops writing and exits non-zero.

Replica URLs: file:///abs/path or
s3://bucket/prefix?endpoint=URL&region=R&force-path-style=true, with
credentials from the standard AWS chain (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, or a profile).`
}

func (c *followCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("follow")
	interval := time.Second
	fs.Func("interval", "poll the replica every `D` (default 1s)", followDuration(&interval))
	addr := fs.String("addr", "", "serve /status, /metrics and /healthz on `ADDR` (host:port)")
	maxLag := config.DefaultHealthzMaxLag
	fs.Func("healthz-max-lag", "answer 503 on /healthz once the lag or a failure lasts longer than `D` (default 5m)", followDuration(&maxLag))
	keys := keyFlag(fs, "for an encrypted replica")
	standbyFlag := fs.Bool("standby", false, "take over as the primary once its lease lapses")
	ttl := fs.Duration("lease", 30*time.Second, "with -standby, the `TTL` of the lease held once promoted (at least 3s)")
	execCmd := fs.String("exec", "", "with -standby, run `CMD` as the application once promoted")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	set := setFlags(fs)
	switch {
	case !*standbyFlag && (set["lease"] || set["exec"]):
		return usagef("-lease and -exec go with -standby")
	case set["exec"] && *execCmd == "":
		return usagef("-exec needs a command")
	case *ttl < config.MinLease:
		return usagef("-lease needs a duration of at least %s, such as 30s", config.MinLease)
	}
	if fs.NArg() != 2 {
		return usagef("want REPLICA_URL and DB_PATH, got %d arguments", fs.NArg())
	}
	t, err := replicaURL(fs.Arg(0))
	if err != nil {
		return err
	}
	path, err := dbPath(fs.Arg(1))
	if err != nil {
		return err
	}
	store, ring, err := openToRead(ctx, t, keys)
	if err != nil {
		return err
	}
	var finish chan struct{}
	if *standbyFlag {
		finish = make(chan struct{})
	}
	f := follow.New(store, path, follow.Options{
		Replica:       t.String(),
		Interval:      interval,
		HealthzMaxLag: maxLag,
		Log:           c.log,
		Keys:          ring.Keys(),
		Finish:        finish,
	})
	stopServing := func() {}
	if *addr != "" {
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", *addr, err)
		}
		srv := &http.Server{Handler: f.Handler(), ReadHeaderTimeout: 10 * time.Second}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		var once sync.Once
		stopServing = func() {
			once.Do(func() {
				srv.Close()
				<-served
			})
		}
		defer stopServing()
		c.log.Info("serving /status, /metrics and /healthz", "addr", ln.Addr().String())
	}
	if *standbyFlag {
		// Once promoted, the daemon serves the same address: its own
		// /status, /metrics and /healthz, those of a primary.
		sb := &standby{app: c.app, store: store, replica: config.Replica{Target: t, Keys: ring},
			path: path, interval: interval, ttl: *ttl, execCmd: *execCmd, addr: *addr, stopServing: stopServing}
		return sb.run(ctx, f, finish)
	}
	return f.Run(ctx)
}

// followDuration parses a flag's duration into d, refusing zero and
// negative values.
func followDuration(d *time.Duration) func(string) error {
	return func(s string) (err error) {
		v, err := config.ParseDuration(s)
		if err == nil && v <= 0 {
			err = errors.New("must be positive")
		}
		if err == nil {
			*d = v
		}
		return err
	}
}
