package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
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
	wait := timeout
	if wait == 0 {
		wait = 365 * 24 * time.Hour
	}
	rep, err := newControlClient(db).sync(ctx, wait)
	if err != nil {
		return err
	}
	if !rep.Done {
		why := rep.Error
		if timeout > 0 && strings.Contains(why, context.DeadlineExceeded.Error()) {
			why = "timed out after " + timeout.String()
		}
		return fmt.Errorf("%s: not yet durable everywhere (%s): %s", db, why, progressLine(rep.Status))
	}
	fmt.Fprintf(c.stdout, "%s: durable: %s\n", db, progressLine(rep.Status))
	return nil
}

// progressLine sums up how far each target of each database has come.
func progressLine(rep daemon.StatusReport) string {
	var parts []string
	for _, db := range rep.DBs {
		for _, t := range db.Targets {
			parts = append(parts, fmt.Sprintf("%s has txid %d of %d", t.URL, t.Replicated, db.TXID))
		}
	}
	return strings.Join(parts, "; ")
}
