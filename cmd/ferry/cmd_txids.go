package main

import (
	"context"
	"fmt"
	"time"
)

type txidsCmd struct{ *app }

func (*txidsCmd) Name() string { return "txids" }
func (*txidsCmd) Summary() string {
	return "list the txid ranges a replica can restore, and the gaps"
}
func (*txidsCmd) Usage() string {
	return `
Usage: ferry txids [-json] [-config PATH] DB_PATH|REPLICA_URL

Lists the ranges of transactions that a restore can reach exactly, each
with the time of the snapshot it starts from, and the gaps between them
(where the spool overflowed or continuity broke and a new snapshot
restarted the chain). Any txid inside a range can be given to
'ferry restore -txid'.`
}

func (c *txidsCmd) Run(ctx context.Context, args []string) error {
	cat, asJSON, err := c.listing(ctx, "txids", c.Usage(), args)
	if err != nil {
		return err
	}
	type span struct {
		Kind  string    `json:"kind"` // "range" or "gap"
		First uint64    `json:"first_txid"`
		Last  uint64    `json:"last_txid"`
		Since time.Time `json:"snapshot_time,omitzero"`
	}
	var spans []span
	for i, r := range cat.Ranges() {
		if i > 0 {
			spans = append(spans, span{Kind: "gap", First: spans[len(spans)-1].Last + 1, Last: r.First - 1})
		}
		s := span{Kind: "range", First: r.First, Last: r.Last}
		for _, snap := range cat.Snapshots {
			if snap.TXID == r.First {
				s.Since = snap.Time
			}
		}
		spans = append(spans, s)
	}
	if asJSON {
		if spans == nil {
			spans = []span{}
		}
		return writeJSON(c.stdout, spans)
	}
	if len(spans) == 0 {
		fmt.Fprintln(c.stdout, "nothing restorable: the replica holds no snapshot")
		return nil
	}
	for _, s := range spans {
		if s.Kind == "gap" {
			fmt.Fprintf(c.stdout, "gap    %d-%d  not restorable\n", s.First, s.Last)
			continue
		}
		fmt.Fprintf(c.stdout, "range  %d-%d  from a snapshot of %s\n", s.First, s.Last, s.Since.Format(time.RFC3339))
	}
	return nil
}
