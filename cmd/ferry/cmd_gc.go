package main

import "context"

type gcCmd struct{ *app }

func (*gcCmd) Name() string { return "gc" }
func (*gcCmd) Summary() string {
	return "delete history past retention and objects nothing references (not built yet)"
}
func (*gcCmd) Usage() string {
	return `
Usage: ferry gc [-dry-run] DB_PATH|REPLICA_URL

Not built yet: ferry gc checks its arguments, deletes nothing and exits
non-zero. Until it is built, ferry keeps all history in the replica.

Once built, it deletes the snapshots and change sets older than the
retention period (always keeping what the newest restorable state needs)
and the chunks no remaining snapshot references.`
}

func (c *gcCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("gc")
	fs.Bool("dry-run", false, "list what would be deleted; delete nothing")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if _, err := oneLocation(fs); err != nil {
		return err
	}
	return errNotImplemented
}
