package main

import (
	"context"
	"fmt"
	"strings"
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
	fs.Bool("json", false, "print JSON, one object per finding")
	if err := c.parse(fs, usage, args); err != nil {
		return withHelp(err, "ferry spool fsck -h")
	}
	if fs.NArg() != 1 {
		return withHelp(usagef("want one SPOOL_DIR, got %d arguments", fs.NArg()), "ferry spool fsck -h")
	}
	if err := existing(fs.Arg(0), "directory"); err != nil {
		return err
	}
	return errNotImplemented
}
