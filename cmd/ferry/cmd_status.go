package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/ferrydb/ferry/internal/daemon"
)

type statusCmd struct{ *app }

func (*statusCmd) Name() string { return "status" }
func (*statusCmd) Summary() string {
	return "show each database's replication progress, lag and last error"
}
func (*statusCmd) Usage() string {
	return `
Usage: ferry status [-json] [-config PATH] [DB_PATH...]

Shows, for each database and each of its replicas, the local txid, the
replicated txid, the lag in seconds, the bytes waiting in the spool and
the last error, as reported by the running daemon.`
}

func (c *statusCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("status")
	asJSON := fs.Bool("json", false, "print JSON")
	cfgPath := configFlag(fs)
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	var dbs []string
	for _, arg := range fs.Args() {
		db, err := dbPath(arg)
		if err != nil {
			return err
		}
		dbs = append(dbs, db)
	}
	if len(dbs) == 0 {
		cfg, err := c.configOf(fs, *cfgPath)
		if err != nil {
			return err
		}
		var all daemon.StatusReport
		for _, db := range cfg.DBs {
			rep, err := controlOf(db).status(ctx)
			if err != nil {
				return err
			}
			all.DBs = append(all.DBs, rep.DBs...)
		}
		if len(cfg.DBs) == 0 {
			return fmt.Errorf("%s names no database", cfg.Source)
		}
		return c.print(all, *asJSON)
	}
	var all daemon.StatusReport
	for _, db := range dbs {
		rep, err := newControlClient(db).status(ctx)
		if err != nil {
			return err
		}
		all.DBs = append(all.DBs, rep.DBs...)
	}
	return c.print(all, *asJSON)
}

// print writes the report as a table, or as JSON.
func (c *statusCmd) print(all daemon.StatusReport, asJSON bool) error {
	if asJSON {
		return writeJSON(c.stdout, all)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DB\tTARGET\tLOCAL TXID\tREPLICATED\tLAG\tSPOOL\tLAST ERROR")
	for _, db := range all.DBs {
		for _, t := range db.Targets {
			lastErr := t.LastError
			if lastErr == "" {
				lastErr = db.LastError
			}
			if lastErr == "" {
				lastErr = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1fs\t%d B\t%s\n", db.DB, t.URL, db.TXID, t.Replicated, db.Lag[t.URL], db.SpoolBytes, lastErr)
		}
		for _, g := range db.Gaps {
			reason := g.Reason
			if g.Open {
				reason += " (open: a snapshot will end it once the target answers)"
			}
			fmt.Fprintf(tw, "%s\t%s\tgap\t%d-%d\t\t\t%s\n", db.DB, g.Target, g.First, g.Last, reason)
		}
	}
	return tw.Flush()
}
