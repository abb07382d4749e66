package main

import (
	"context"
	"errors"
	"time"

	"github.com/ferrydb/ferry/internal/config"
)

type syncCmd struct{ *app }

func (*syncCmd) Name() string { return "sync" }
func (*syncCmd) Summary() string {
	return "wait until everything committed so far is durable remotely"
}
func (*syncCmd) Usage() string {
	return `
Usage: ferry sync [-timeout D] DB_PATH

Blocks until every transaction committed to DB_PATH before the call is
durable in every replica, by asking the daemon that replicates DB_PATH.
Exits 0 once it is; non-zero if the timeout passes first.`
}

func (c *syncCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("sync")
	var timeout time.Duration
	fs.Func("timeout", "give up after `D` (such as 30s or 5m; default: wait until interrupted)", func(s string) (err error) {
		timeout, err = config.ParseDuration(s)
		if err == nil && timeout <= 0 {
			err = errors.New("must be positive")
		}
		return err
	})
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want one DB_PATH, got %d arguments", fs.NArg())
	}
	if isURL(fs.Arg(0)) {
		return usagef("sync takes the DB_PATH of a replicated database, not a replica URL")
	}
	db, err := dbPath(fs.Arg(0))
	if err != nil {
		return err
	}
	if err := existing(db, "file"); err != nil {
		return err
	}
	return errNotImplemented
}
