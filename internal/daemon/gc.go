package daemon

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/gc"
	"github.com/ferrydb/ferry/internal/objstore"
)

// sweep runs gc on every target of db every GCInterval, jittered so that
// a fleet of databases started together does not sweep together, until
// ctx ends. A failed sweep is logged and tried again at the next one:
// what it did not delete is only garbage, never damage.
func (d *daemon) sweep(ctx context.Context, db config.DB, targets map[string]objstore.Store) {
	log := d.o.Log.With("db", db.Path)
	for {
		// Between half and the whole interval: the first sweep does not
		// come at start, when the replicator is busiest.
		wait := db.GCInterval/2 + rand.N(db.GCInterval/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		for url, store := range targets {
			rep, err := gc.Run(ctx, store, gc.Options{Retention: db.Retention, Grace: d.o.GCGrace, Log: log})
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				log.Warn("gc failed; trying again at the next sweep", "target", url, "err", err)
			case len(rep.Deleted) > 0:
				log.Info("gc deleted history past retention", "target", url, "objects", len(rep.Deleted), "bytes", rep.Bytes,
					"oldest_snapshot_txid", rep.Oldest, "retention", db.Retention)
			}
		}
	}
}
