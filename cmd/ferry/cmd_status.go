package main

import "context"

type statusCmd struct{ *app }

func (*statusCmd) Name() string { return "status" }
func (*statusCmd) Summary() string {
	return "show each database's replication progress, lag and last error"
}
func (*statusCmd) Usage() string {
	return `
Usage: ferry status [-json] [-config PATH]

Shows, for each database and each of its replicas, the local txid, the
replicated txid, the lag in seconds, the bytes waiting in the spool and
the last error, as reported by the running daemon.`
}

func (c *statusCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("status")
	fs.Bool("json", false, "print JSON")
	cfgPath := configFlag(fs)
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if setFlags(fs)["config"] {
		if *cfgPath == "" {
			return usagef("-config needs a path")
		}
		if _, err := c.loadConfig(*cfgPath, true); err != nil {
			return err
		}
	}
	return errNotImplemented
}
