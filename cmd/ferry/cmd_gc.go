package main

import "context"

type gcCmd struct{ *app }

func (*gcCmd) Name() string { return "gc" }
func (*gcCmd) Summary() string {
	return "delete history past retention and objects nothing references"
}
func (*gcCmd) Usage() string {
	return `
Usage: ferry gc [-dry-run] DB_PATH|REPLICA_URL

Deletes the snapshots and change sets older than the retention period
(always keeping what the newest restorable state needs) and the chunks no
remaining snapshot references.`
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
