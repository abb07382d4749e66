package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/spool"
)

type spoolCmd struct{ *app }

func (*spoolCmd) Name() string    { return "spool" }
func (*spoolCmd) Summary() string { return "inspect a spool directory (fsck)" }
func (*spoolCmd) Usage() string {
	return `
Usage: ferry spool fsck [-json] SPOOL_DIR

Subcommands:
  fsck   report spool entries that are too old, orphaned, duplicated or
         failed, and exit non-zero if there is one

Run 'ferry spool fsck -h' for its flags.`
}

func (c *spoolCmd) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(c.stdout, strings.TrimSpace(c.Usage()))
		return errHelp
	case "fsck":
		return c.fsck(ctx, args[1:])
	}
	return usagef("unknown subcommand %q", args[0])
}

func (c *spoolCmd) fsck(_ context.Context, args []string) error {
	const usage = `
Usage: ferry spool fsck [-json] SPOOL_DIR

Checks the spool in SPOOL_DIR and reports entries that are too old,
orphaned (claimed by a worker that is gone), duplicated, or moved to the
failed queue with their reasons. Exits non-zero if it finds any.`
	fs := newFlagSet("spool fsck")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := c.parse(fs, usage, args); err != nil {
		return withHelp(err, "ferry spool fsck -h")
	}
	if fs.NArg() != 1 {
		return withHelp(usagef("want one SPOOL_DIR, got %d arguments", fs.NArg()), "ferry spool fsck -h")
	}
	dir := fs.Arg(0)
	if err := existing(dir, "directory"); err != nil {
		return err
	}
	rep, err := spool.Check(dir, spool.Limits{}, time.Now())
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(c.stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("spool %s: %d problem(s) found", dir, len(rep.Problems))
	}
	return nil
}
