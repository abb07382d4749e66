package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ferrydb/ferry/internal/restore"
)

type snapshotsCmd struct{ *app }

func (*snapshotsCmd) Name() string    { return "snapshots" }
func (*snapshotsCmd) Summary() string { return "list a replica's snapshots" }
func (*snapshotsCmd) Usage() string {
	return `
Usage: ferry snapshots [-json] [-config PATH] [-replica URL] [-key-file PATH]... DB_PATH|REPLICA_URL

Lists the snapshots in a database's replica, oldest first, with each one's
txid, time and size. Given DB_PATH, lists the first of its replicas that
answers and holds data, or the one -replica names; they are found as
'ferry restore -h' says.`
}

func (c *snapshotsCmd) Run(ctx context.Context, args []string) error {
	cat, asJSON, err := c.listing(ctx, "snapshots", c.Usage(), args)
	if err != nil {
		return err
	}
	if asJSON {
		type snap struct {
			Key       string    `json:"key"`
			TXID      uint64    `json:"txid"`
			Time      time.Time `json:"time"`
			PageSize  int       `json:"page_size"`
			PageCount uint32    `json:"page_count"`
			Size      int64     `json:"size"`
		}
		out := []snap{}
		for _, s := range cat.Snapshots {
			out = append(out, snap{s.Key, s.TXID, s.Time, s.PageSize, s.PageCount, s.Size})
		}
		return writeJSON(c.stdout, out)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TXID\tTIME\tSIZE\tPAGES")
	for _, s := range cat.Snapshots {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d x %d\n", s.TXID, s.Time.Format(time.RFC3339), s.Size, s.PageCount, s.PageSize)
	}
	return tw.Flush()
}

// listing parses the command line shared by the commands that list a
// replica ([-json] [-config PATH] [-replica URL] DB_PATH|REPLICA_URL) and
// lists the replica: the URL, or the first replica of DB_PATH that
// answers and holds something.
func (a *app) listing(ctx context.Context, name, usage string, args []string) (cat restore.Catalog, asJSON bool, err error) {
	fs := newFlagSet(name)
	jsonFlag := fs.Bool("json", false, "print JSON")
	cfgPath := configFlag(fs)
	choose := replicaFlag(fs)
	keys := keyFlag(fs, "for an encrypted replica")
	if err := a.parse(fs, usage, args); err != nil {
		return cat, false, err
	}
	loc, err := oneLocation(fs)
	if err != nil {
		return cat, false, err
	}
	set, err := a.replicasOf(ctx, loc, *cfgPath, *choose, keys)
	if err != nil {
		return cat, false, err
	}
	src, err := a.firstUsable(ctx, name, "listing", set)
	return src.cat, *jsonFlag, err
}

// replicaFlag adds -replica to fs.
func replicaFlag(fs *flag.FlagSet) *string {
	return fs.String("replica", "", "of the replicas of DB_PATH, use the one at `URL`")
}
