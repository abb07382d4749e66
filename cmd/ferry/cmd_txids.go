package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ferrydb/ferry/internal/restore"
)

type txidsCmd struct{ *app }

func (*txidsCmd) Name() string { return "txids" }
func (*txidsCmd) Summary() string {
	return "list the txid ranges a replica can restore, and the gaps"
}
func (*txidsCmd) Usage() string {
	return `
Usage: ferry txids [-json] [-config PATH] [-replica URL] [-key-file PATH]... DB_PATH|REPLICA_URL

Lists the ranges of transactions that a restore can reach exactly, each
with the time of the snapshot it starts from, and the gaps between them
(where the spool overflowed or continuity broke and a new snapshot
restarted the chain). Any txid inside a range can be given to
'ferry restore -txid'. A damaged replica shows, past its last range, the
txids that are missing and those stranded beyond them: held, but
reached by no restore. Given DB_PATH, lists the first of its replicas that
answers and holds data, or the one -replica names.`
}

// txidSpan is one line of 'ferry txids'.
type txidSpan struct {
	// Kind is "range" (restorable), "gap" (recorded: a newer snapshot
	// starts a new chain), "break" (a txid that folds in commits the
	// replicator could not read, so the states between them and the txid
	// before do not restore), "missing" (held by no object, with objects
	// past it) or "stranded" (held, but reached by no restore).
	Kind  string    `json:"kind"`
	First uint64    `json:"first_txid"`
	Last  uint64    `json:"last_txid"`
	Since time.Time `json:"snapshot_time,omitzero"`
}

func (c *txidsCmd) Run(ctx context.Context, args []string) error {
	cat, asJSON, err := c.listing(ctx, "txids", c.Usage(), args)
	if err != nil {
		return err
	}
	spans := txidSpans(cat)
	if asJSON {
		if spans == nil {
			spans = []txidSpan{}
		}
		return writeJSON(c.stdout, spans)
	}
	if len(spans) == 0 {
		fmt.Fprintln(c.stdout, "nothing restorable: the replica holds no snapshot")
		return nil
	}
	for _, s := range spans {
		var what string
		switch s.Kind {
		case "range":
			what = "from a snapshot of " + s.Since.Format(time.RFC3339)
		case "gap":
			what = "not restorable"
		case "break":
			what = "the log broke continuity: this txid folds in commits ferry could not read"
		case "missing":
			what = "held by no object: the replica is damaged"
		case "stranded":
			what = "held, but no restore reaches them"
		}
		fmt.Fprintf(c.stdout, "%-8s %d-%d  %s\n", s.Kind, s.First, s.Last, what)
	}
	if err := cat.Check(); err != nil {
		fmt.Fprintf(c.stdout, "damaged: %v\n", err)
	}
	return nil
}

// txidSpans lays out what cat restores, and, past the newest restorable
// txid, what it holds that no restore reaches.
func txidSpans(cat restore.Catalog) []txidSpan {
	var spans []txidSpan
	for i, r := range cat.Ranges() {
		if i > 0 {
			spans = append(spans, txidSpan{Kind: "gap", First: spans[len(spans)-1].Last + 1, Last: r.First - 1})
		}
		s := txidSpan{Kind: "range", First: r.First, Last: r.Last}
		for _, snap := range cat.Snapshots {
			if snap.TXID == r.First {
				s.Since = snap.Time
			}
		}
		spans = append(spans, s)
		for _, b := range cat.Breaks {
			if b > r.First && b <= r.Last {
				spans = append(spans, txidSpan{Kind: "break", First: b, Last: b})
			}
		}
	}
	// Without a snapshot nothing says where the missing txids begin, so
	// only the holes between stranded runs are shown.
	prev := cat.Latest()
	for _, r := range cat.Stranded() {
		if prev > 0 && r.First > prev+1 {
			spans = append(spans, txidSpan{Kind: "missing", First: prev + 1, Last: r.First - 1})
		}
		spans = append(spans, txidSpan{Kind: "stranded", First: r.First, Last: r.Last})
		prev = r.Last
	}
	return spans
}
