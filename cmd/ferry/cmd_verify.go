package main

import "context"

type verifyCmd struct{ *app }

func (*verifyCmd) Name() string { return "verify" }
func (*verifyCmd) Summary() string {
	return "check that a replica is complete (-deep: and intact)"
}
func (*verifyCmd) Usage() string {
	return `
Usage: ferry verify [-deep] DB_PATH|REPLICA_URL

Checks that a replica restores: the chain of snapshots and change sets is
continuous and every object they reference is present. With -deep, also
downloads every object and checks its hash. Names each missing or damaged
object; exits non-zero if there is one.`
}

func (c *verifyCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("verify")
	fs.Bool("deep", false, "download and hash every object")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if _, err := oneLocation(fs); err != nil {
		return err
	}
	return errNotImplemented
}
