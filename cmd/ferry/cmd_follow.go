package main

import (
	"context"
	"errors"
	"time"

	"github.com/ferrydb/ferry/internal/config"
)

type followCmd struct{ *app }

func (*followCmd) Name() string { return "follow" }
func (*followCmd) Summary() string {
	return "keep a read replica of a database up to date from its replica (not built yet)"
}
func (*followCmd) Usage() string {
	return `
Usage: ferry follow [-interval D] REPLICA_URL DB_PATH

Not built yet: ferry follow checks its arguments, writes nothing and exits
non-zero. Until it is built, 'ferry restore' gives a copy of the latest
state.

Once built, it restores the database in REPLICA_URL to DB_PATH, then keeps
applying new transactions as they arrive in the replica, until
interrupted. Readers of DB_PATH always see a committed state.`
}

func (c *followCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("follow")
	interval := time.Second
	fs.Func("interval", "poll the replica every `D` (default 1s)", func(s string) (err error) {
		interval, err = config.ParseDuration(s)
		if err == nil && interval <= 0 {
			err = errors.New("must be positive")
		}
		return err
	})
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("want REPLICA_URL and DB_PATH, got %d arguments", fs.NArg())
	}
	if _, err := replicaURL(fs.Arg(0)); err != nil {
		return err
	}
	if _, err := dbPath(fs.Arg(1)); err != nil {
		return err
	}
	return errNotImplemented
}
