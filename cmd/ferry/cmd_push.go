package main

import (
	"context"
	"fmt"
	"path"
	"strings"
)

type pushCmd struct{ *app }

func (*pushCmd) Name() string    { return "push" }
func (*pushCmd) Summary() string { return "spool files for upload to a replica" }
func (*pushCmd) Usage() string {
	return `
Usage: ferry push [-key PREFIX] [-wait] PATH... REPLICA_URL

Copies each PATH into the spool, from where it is uploaded to REPLICA_URL
under its base name, or under PREFIX/ with -key. Returns once the files
are safely spooled; with -wait, once they are durable in the replica.`
}

func (c *pushCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("push")
	fs.Func("key", "upload under key `PREFIX` in the replica", validKeyPrefix)
	fs.Bool("wait", false, "wait until the files are durable in the replica")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usagef("want one or more PATHs and a REPLICA_URL, got %d arguments", fs.NArg())
	}
	paths, dst := fs.Args()[:fs.NArg()-1], fs.Arg(fs.NArg()-1)
	if _, err := replicaURL(dst); err != nil {
		return err
	}
	for _, p := range paths {
		if err := existing(p, ""); err != nil {
			return err
		}
	}
	return errNotImplemented
}

// validKeyPrefix rejects a -key that would not name one place under the
// replica: "a/../b" and "a//b" read differently on different stores.
func validKeyPrefix(s string) error {
	k := strings.Trim(s, "/")
	if k == "" {
		return fmt.Errorf("empty key prefix")
	}
	if path.Clean(k) != k {
		return fmt.Errorf("key prefix %q has empty, '.' or '..' segments", s)
	}
	if k == ".." || strings.HasPrefix(k, "../") {
		return fmt.Errorf("key prefix %q leaves the replica", s)
	}
	return nil
}
