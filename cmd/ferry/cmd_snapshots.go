package main

import "context"

type snapshotsCmd struct{ *app }

func (*snapshotsCmd) Name() string    { return "snapshots" }
func (*snapshotsCmd) Summary() string { return "list a replica's snapshots" }
func (*snapshotsCmd) Usage() string {
	return `
Usage: ferry snapshots [-json] DB_PATH|REPLICA_URL

Lists the snapshots in a database's replica, oldest first, with each one's
txid, time and size.`
}

func (c *snapshotsCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("snapshots")
	fs.Bool("json", false, "print JSON, one object per snapshot")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if _, err := oneLocation(fs); err != nil {
		return err
	}
	return errNotImplemented
}
