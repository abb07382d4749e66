package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/daemon"
)

type databasesCmd struct{ *app }

func (*databasesCmd) Name() string { return "databases" }
func (*databasesCmd) Summary() string {
	return "list the databases a config replicates, with their replicas"
}
func (*databasesCmd) Usage() string {
	return `
Usage: ferry databases [-json] [-config PATH]

Lists every database the config replicates: those it names by path, then
the SQLite databases in WAL mode found now under each dir entry, each
with the replica URLs it gets there. STATE is what the running daemon
reports (active, idle, starting or failed), or - when no daemon answers for the
database. A file a dir entry's pattern takes that is not a SQLite
database in WAL mode is named on stderr, with the reason; with -json it
is listed under "skipped".`
}

// noState stands for the state of a database no daemon reports on.
const noState = "-"

// stateWait bounds the questions to running daemons. A daemon with its
// socket up answers at once; one that does not answer in this time is as
// good as not there, and the listing is still worth printing.
const stateWait = 5 * time.Second

func (c *databasesCmd) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("databases")
	asJSON := fs.Bool("json", false, "print JSON")
	cfgPath := configFlag(fs)
	if err := c.parse(fs, c.Usage(), args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := c.configOf(fs, *cfgPath)
	if err != nil {
		return err
	}
	if len(cfg.DBs) == 0 {
		return fmt.Errorf("%s names no database", cfg.Source)
	}
	dbs, skipped, err := daemon.Databases(cfg)
	if err != nil {
		return err
	}
	states := daemonStates(ctx, cfg)

	type entry struct {
		DB       string   `json:"db"`
		Replicas []string `json:"replicas"`
		State    string   `json:"state"`
	}
	out := struct {
		DBs     []entry          `json:"dbs"`
		Skipped []daemon.Skipped `json:"skipped"`
	}{DBs: []entry{}, Skipped: skipped}
	if out.Skipped == nil {
		out.Skipped = []daemon.Skipped{}
	}
	for _, db := range dbs {
		e := entry{DB: db.Path, Replicas: []string{}, State: noState}
		for _, r := range db.Replicas {
			e.Replicas = append(e.Replicas, r.Target.String())
		}
		if s, ok := states[db.Path]; ok {
			e.State = s
		}
		out.DBs = append(out.DBs, e)
	}
	if *asJSON {
		return writeJSON(c.stdout, out)
	}
	for _, s := range skipped {
		fmt.Fprintf(c.stderr, "ferry databases: skipped %s: %s\n", s.Path, s.Why)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DB\tREPLICAS\tSTATE")
	for _, e := range out.DBs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.DB, strings.Join(e.Replicas, ","), e.State)
	}
	return tw.Flush()
}

// daemonStates asks the daemons replicating cfg's entries, on their
// control sockets, for the state of each database they replicate, by
// path. An entry whose daemon does not answer adds nothing: the listing
// comes from the config, and a stopped daemon is no reason to fail it.
func daemonStates(ctx context.Context, cfg *config.Config) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, stateWait)
	defer cancel()
	states := map[string]string{}
	for _, db := range cfg.DBs {
		rep, err := controlOf(db).status(ctx)
		if err != nil {
			continue
		}
		if db.Dir == nil {
			// A socket of one database's own answers for it whatever
			// ?db= says, under the path its daemon was given, which may
			// be spelt otherwise than the config's.
			if len(rep.DBs) == 1 {
				states[db.Path] = rep.DBs[0].State
			}
			continue
		}
		for _, st := range rep.DBs {
			states[st.DB] = st.State
		}
	}
	return states
}
