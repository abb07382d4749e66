package main

import (
	"context"
	"fmt"

	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/verify"
)

type verifyCmd struct{ *app }

func (*verifyCmd) Name() string { return "verify" }
func (*verifyCmd) Summary() string {
	return "check that a replica is complete (-deep: and intact)"
}
func (*verifyCmd) Usage() string {
	return `
Usage: ferry verify [-deep] [-json] [-config PATH] DB_PATH|REPLICA_URL

Checks that a replica restores: the chain of snapshots and change sets is
continuous and every object they reference is present. With -deep, also
downloads every object and checks its hash. Names each missing or damaged
object; exits non-zero if there is one.`
}

func (c *verifyCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("verify")
	deep := fs.Bool("deep", false, "download and hash every object")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	cfgPath := configFlag(fs)
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	loc, err := oneLocation(fs)
	if err != nil {
		return err
	}
	replica, err := c.replicaFor(loc, *cfgPath)
	if err != nil {
		return err
	}
	store, err := target.Open(ctx, replica, target.Options{Check: true, MustExist: true})
	if err != nil {
		return err
	}
	rep, err := verify.Run(ctx, store, *deep)
	if err != nil {
		return fmt.Errorf("%s: %w", replica.Target, err)
	}
	if *asJSON {
		if rep.Problems == nil {
			rep.Problems = []verify.Problem{}
		}
		if err := writeJSON(c.stdout, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(c.stdout, "%s: %d snapshots, %d chunks, %d segments\n", replica.Target, rep.Snapshots, rep.Chunks, rep.Segments)
		for _, r := range rep.Ranges {
			fmt.Fprintf(c.stdout, "restorable txids %d-%d\n", r.First, r.Last)
		}
		for _, p := range rep.Problems {
			fmt.Fprintf(c.stdout, "%-10s %s: %s\n", p.Kind, p.Key, p.Detail)
		}
	}
	if !rep.OK() {
		return fmt.Errorf("%s: %d missing or damaged object(s)", replica.Target, len(rep.Problems))
	}
	if !*asJSON {
		fmt.Fprintln(c.stdout, "OK: every referenced object is present"+map[bool]string{true: " and intact", false: ""}[*deep])
	}
	return nil
}
