package daemon

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/compact"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/gc"
	"github.com/ferrydb/ferry/internal/objstore"
)

// sweep runs gc on every target of db every GCInterval, jittered so that
// a fleet of databases started together does not sweep together, until
// ctx ends. A failed sweep is logged and tried again at the next one:
// what it did not delete is only garbage, never damage.
func (d *daemon) sweep(ctx context.Context, db config.DB, r *capture.Replicator, targets map[string]objstore.Store) {
	log := d.o.Log.With("db", db.Path)
	// An idle database must cost no request: once a sweep found nothing to
	// delete, the next one waits for a new transaction. History that ages
	// out of retention meanwhile goes at the first sweep after it; an idle
	// replica does not grow.
	var idleAt uint64
	swept := false
	for {
		// Between half and the whole interval: the first sweep does not
		// come at start, when the replicator is busiest.
		wait := db.GCInterval/2 + rand.N(db.GCInterval/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		txid := r.Status().TXID
		if swept && txid == idleAt {
			continue
		}
		deleted := 0
		failed := false
		for url, store := range targets {
			rep, err := gc.Run(ctx, store, gc.Options{Retention: db.Retention, Grace: d.o.GCGrace, Log: log})
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				failed = true
				log.Warn("gc failed; trying again at the next sweep", "target", url, "err", err)
			case len(rep.Deleted) > 0:
				deleted += len(rep.Deleted)
				log.Info("gc deleted history past retention", "target", url, "objects", len(rep.Deleted), "bytes", rep.Bytes,
					"oldest_snapshot_txid", rep.Oldest, "retention", db.Retention)
			}
			// Then many small change sets become few: fewer requests for
			// a restore and a listing.
			crep, err := compact.Run(ctx, store, compact.Options{Log: log})
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				failed = true
				log.Warn("compaction failed; trying again at the next sweep", "target", url, "err", err)
			case len(crep.Merged) > 0:
				deleted += len(crep.Deleted) + len(crep.Merged) // a sweep that compacted is not idle
				log.Info("compacted change sets", "target", url, "merged", len(crep.Merged), "replaced", len(crep.Deleted), "bytes", crep.Bytes)
			}
		}
		swept, idleAt = !failed && deleted == 0, txid
	}
}
