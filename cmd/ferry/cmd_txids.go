package main

import "context"

type txidsCmd struct{ *app }

func (*txidsCmd) Name() string { return "txids" }
func (*txidsCmd) Summary() string {
	return "list the txid and time ranges a replica can restore"
}
func (*txidsCmd) Usage() string {
	return `
Usage: ferry txids [-json] DB_PATH|REPLICA_URL

Lists the ranges of transactions, with their commit times, that a restore
can reach, and the gaps between them (where the spool overflowed or
continuity broke and a new snapshot restarted the chain).`
}

func (c *txidsCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("txids")
	fs.Bool("json", false, "print JSON, one object per range or gap")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if _, err := oneLocation(fs); err != nil {
		return err
	}
	return errNotImplemented
}
