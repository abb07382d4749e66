package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferrydb/ferry/internal/config"

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
Usage: ferry verify [-deep] [-json] [-config PATH] [-replica URL] [-key-file PATH]... DB_PATH|REPLICA_URL

Checks that a replica restores the newest txid it holds: the chain of
snapshots and change sets is continuous and every object they reference
is present. With -deep, also downloads every object and checks its hash.
Names each missing or damaged object, and exits non-zero if there is one,
if the replica is empty, or if no restore reaches the newest txid it holds.
Given DB_PATH, checks each of its replicas (or the one -replica names),
found as 'ferry restore -h' says; -json then prints a list of reports.`
}

// replicaReport is verify's JSON for one replica.
type replicaReport struct {
	Replica string `json:"replica"`
	// Error is set when the replica could not be read at all.
	Error string `json:"error,omitempty"`
	*verify.Report
}

func (c *verifyCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("verify")
	deep := fs.Bool("deep", false, "download and hash every object")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	cfgPath := configFlag(fs)
	choose := replicaFlag(fs)
	keys := keyFlag(fs, "for an encrypted replica; -deep needs it")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	loc, err := oneLocation(fs)
	if err != nil {
		return err
	}
	set, err := c.replicasOf(ctx, loc, *cfgPath, *choose, keys)
	if err != nil {
		return err
	}
	var reports []replicaReport
	var failures []string
	for _, r := range set.replicas {
		rep, err := c.verifyOne(ctx, r, *deep)
		if err != nil {
			if len(set.replicas) == 1 {
				return err
			}
			reports = append(reports, replicaReport{Replica: r.Target.String(), Error: err.Error()})
			failures = append(failures, err.Error())
			continue
		}
		reports = append(reports, replicaReport{Replica: r.Target.String(), Report: &rep})
		if !rep.OK() {
			failures = append(failures, verifyFailure(r.Target.String(), rep))
		}
	}
	if *asJSON {
		var err error
		if loc.isURL {
			err = writeJSON(c.stdout, reports[0])
		} else {
			err = writeJSON(c.stdout, reports)
		}
		if err != nil {
			return err
		}
	} else {
		for _, r := range reports {
			if r.Report != nil {
				c.printReport(r.Replica, *r.Report, *deep)
			}
		}
	}
	switch {
	case len(failures) == 1:
		return errors.New(failures[0])
	case len(failures) > 1:
		return fmt.Errorf("%d of %d replicas of %s fail: %s", len(failures), len(set.replicas), set.db, strings.Join(failures, "; "))
	}
	return nil
}

func (c *verifyCmd) verifyOne(ctx context.Context, r config.Replica, deep bool) (verify.Report, error) {
	store, err := target.Open(ctx, r, target.Options{Check: true, MustExist: true})
	if err != nil {
		return verify.Report{}, err
	}
	rep, err := verify.Run(ctx, store, deep, r.Keys.Keys())
	if err != nil {
		return rep, fmt.Errorf("%s: %w", r.Target, err)
	}
	if rep.Problems == nil {
		rep.Problems = []verify.Problem{}
	}
	return rep, nil
}

// verifyFailure is the one line that says why a replica failed.
func verifyFailure(url string, rep verify.Report) string {
	var parts []string
	switch {
	case rep.Unrestorable != "" && rep.Newest == 0:
		parts = append(parts, rep.Unrestorable)
	case rep.Unrestorable != "":
		parts = append(parts, fmt.Sprintf("cannot restore txid %d, the newest it holds: %s", rep.Newest, rep.Unrestorable))
	}
	if len(rep.Problems) > 0 {
		parts = append(parts, fmt.Sprintf("%d missing or damaged object(s)", len(rep.Problems)))
	}
	return url + ": " + strings.Join(parts, "; ")
}

func (c *verifyCmd) printReport(url string, rep verify.Report, deep bool) {
	fmt.Fprintf(c.stdout, "%s: %d snapshots, %d chunks, %d segments\n", url, rep.Snapshots, rep.Chunks, rep.Segments)
	if rep.Breaks > 0 {
		fmt.Fprintf(c.stdout, "%d break marker(s): a chain of change sets ended there and a newer snapshot carries on\n", rep.Breaks)
	}
	for _, r := range rep.Ranges {
		fmt.Fprintf(c.stdout, "restorable txids %d-%d\n", r.First, r.Last)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(c.stdout, "%-10s %s: %s\n", p.Kind, p.Key, p.Detail)
	}
	switch {
	case rep.Unrestorable != "":
		fmt.Fprintf(c.stdout, "unrestorable: %s\n", rep.Unrestorable)
	case rep.OK():
		fmt.Fprintln(c.stdout, "OK: every referenced object is present"+map[bool]string{true: " and intact", false: ""}[deep]+", and the newest txid restores")
	}
}
