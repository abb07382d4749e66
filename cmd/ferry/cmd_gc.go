package main

import (
	"context"
	"fmt"

	"github.com/ferrydb/ferry/internal/compact"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/gc"
	"github.com/ferrydb/ferry/internal/target"
)

type gcCmd struct{ *app }

func (*gcCmd) Name() string { return "gc" }
func (*gcCmd) Summary() string {
	return "delete history past retention and packs and chunks nothing references"
}
func (*gcCmd) Usage() string {
	return `
Usage: ferry gc [-dry-run] [-json] [-retention D] [-grace D] [-config PATH]
                [-replica URL] [-key-file PATH]... DB_PATH|REPLICA_URL

Deletes what no restore inside the retention period needs: snapshots
older than the one that restores the state 'retention' ago, the change
sets before it, and the packs and chunks no remaining snapshot names.
Then merges
runs of small change sets older than 10 minutes into larger ones that
keep every transaction, so that a restore and a listing need fewer
requests. Every txid
committed within retention stays restorable, and so does the newest
state. -dry-run lists what would go and the bytes it would free; a real
run lists what went. The daemon runs the same sweep every gc-interval.

-retention defaults to the database's retention: in the config, else
72h. Packs and chunks that no snapshot names are deleted only once older
than -grace by the store's clock (1h): a snapshot in flight, here or on
another machine, has not named its new packs yet. It is safe to run gc
while ferry replicates the same replica.

Given DB_PATH, sweeps each of its replicas (or the one -replica names),
found as 'ferry restore -h' says.`
}

func (c *gcCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("gc")
	dry := fs.Bool("dry-run", false, "list what would be deleted; delete nothing")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	retention := fs.Duration("retention", 0, "keep every txid committed within `D` (default: the config's, else 72h)")
	grace := fs.Duration("grace", gc.DefaultGrace, "delete an unreferenced chunk only once older than `D`")
	cfgPath := configFlag(fs)
	choose := replicaFlag(fs)
	keys := keyFlag(fs, "for an encrypted replica")
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	set := setFlags(fs)
	if set["retention"] && *retention <= 0 {
		return usagef("-retention needs a positive duration such as 72h")
	}
	if *grace <= 0 {
		return usagef("-grace needs a positive duration such as 1h")
	}
	loc, err := oneLocation(fs)
	if err != nil {
		return err
	}
	replicas, err := c.replicasOf(ctx, loc, *cfgPath, *choose, keys)
	if err != nil {
		return err
	}
	keep := *retention
	if keep == 0 {
		keep = config.DefaultRetention
		if replicas.retention > 0 {
			keep = replicas.retention
		}
	}
	var reports []sweepReport
	for _, r := range replicas.replicas {
		store, err := target.Open(ctx, r, target.Options{Check: true, MustExist: true})
		if err != nil {
			return err
		}
		rep, err := gc.Run(ctx, store, gc.Options{Retention: keep, Grace: *grace, DryRun: *dry, Log: c.log})
		if err != nil {
			return fmt.Errorf("%s: %w", r.Target, err)
		}
		crep, err := compact.Run(ctx, store, compact.Options{DryRun: *dry, Log: c.log})
		if err != nil {
			return fmt.Errorf("%s: compact: %w", r.Target, err)
		}
		if *asJSON {
			if rep.Deleted == nil {
				rep.Deleted = []gc.Object{}
			}
			reports = append(reports, sweepReport{Replica: r.Target.String(), GC: rep, Compact: crep})
			continue
		}
		verb := "deleted"
		if *dry {
			verb = "would delete"
		}
		for _, o := range rep.Deleted {
			fmt.Fprintf(c.stdout, "%s %s (%d bytes)\n", verb, o.Key, o.Size)
		}
		fmt.Fprintf(c.stdout, "%s: %s %d objects, %d bytes; oldest snapshot kept: txid %d (retention %s); %d unreferenced packs and chunks spared (younger than %s or reprieved)\n",
			r.Target, verb, len(rep.Deleted), rep.Bytes, rep.Oldest, keep, rep.Spared, *grace)
		merge := "merged"
		if *dry {
			merge = "would merge"
		}
		for _, m := range crep.Merged {
			fmt.Fprintf(c.stdout, "%s %d change sets into %s (txids %d-%d)\n", merge, m.Replaces, m.Key, m.First, m.Last)
		}
		for _, d := range crep.Damaged {
			fmt.Fprintf(c.stdout, "damaged, left alone: %s: %s\n", d.Key, d.Why)
		}
	}
	if *asJSON {
		if loc.isURL {
			return writeJSON(c.stdout, reports[0])
		}
		return writeJSON(c.stdout, reports)
	}
	return nil
}

// sweepReport is gc's JSON for one replica: what retention deleted and
// what compaction merged.
type sweepReport struct {
	Replica string         `json:"replica"`
	GC      gc.Report      `json:"gc"`
	Compact compact.Report `json:"compact"`
}
