package daemon

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ferrydb/ferry/internal/compact"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/gc"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/scrub"
)

// sweep runs gc on every target of db every GCInterval, jittered so that
// a fleet of databases started together does not sweep together, until
// ctx ends. A failed sweep is logged and tried again at the next one:
// what it did not delete is only garbage, never damage.
func (d *daemon) sweep(ctx context.Context, db config.DB, u *unit, targets map[string]objstore.Store) {
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
		txid := u.Status().TXID
		if swept && txid == idleAt {
			continue
		}
		clean, ok := d.sweepOnce(ctx, db, targets, log)
		if !ok {
			return
		}
		swept, idleAt = clean, txid
	}
}

// sweepOnce runs gc, then compaction, on every target of db. clean says
// that it deleted and merged nothing, and nothing failed; ok is false when
// ctx ended.
func (d *daemon) sweepOnce(ctx context.Context, db config.DB, targets map[string]objstore.Store, log *slog.Logger) (clean, ok bool) {
	deleted := 0
	failed := false
	for url, store := range targets {
		rep, err := gc.Run(ctx, store, gc.Options{Retention: db.Retention, Grace: d.o.GCGrace, Log: log})
		switch {
		case ctx.Err() != nil:
			return false, false
		case err != nil:
			failed = true
			log.Warn("gc failed; trying again at the next sweep", "target", url, "err", err)
		case len(rep.Deleted) > 0:
			deleted += len(rep.Deleted)
			log.Info("gc deleted history past retention", "target", url, "objects", len(rep.Deleted), "bytes", rep.Bytes,
				"oldest_snapshot_txid", rep.Oldest, "retention", db.Retention)
		}
		// Then many small change sets become few: fewer requests for a
		// restore and a listing.
		crep, err := compact.Run(ctx, store, compact.Options{Log: log})
		switch {
		case ctx.Err() != nil:
			return false, false
		case err != nil:
			failed = true
			log.Warn("compaction failed; trying again at the next sweep", "target", url, "err", err)
		case len(crep.Merged) > 0:
			deleted += len(crep.Deleted) + len(crep.Merged) // a sweep that compacted is not idle
			log.Info("compacted change sets", "target", url, "merged", len(crep.Merged), "replaced", len(crep.Deleted), "bytes", crep.Bytes)
		}
	}
	return !failed && deleted == 0, true
}

// maintainEvery spaces the rounds of maintain.
const maintainEvery = time.Minute

// maintain runs gc and scrub for the databases found under dir entries,
// one database at a time on this one goroutine, so that a fleet costs no
// goroutine per database. Each database is swept every GCInterval and
// scrubbed every ScrubInterval, but only when it took a transaction since
// its last sweep or scrub: an idle database costs no request.
func (d *daemon) maintain(ctx context.Context) {
	tick := time.NewTicker(maintainEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, u := range d.fleet.all() {
			if ctx.Err() != nil {
				return
			}
			if u.entry != nil && u.ctx.Err() == nil {
				d.maintainUnit(u, time.Now())
			}
		}
	}
}

func (d *daemon) maintainUnit(u *unit, now time.Time) {
	db, log := u.db, d.o.Log.With("db", u.db.Path)
	txid := u.Status().TXID
	if txid == 0 {
		return // not opened yet: nothing to measure a change against
	}
	u.mu.Lock()
	if u.sweptAt.IsZero() {
		// The first round of each spreads over an interval from start,
		// and counts what the database held then as swept and scrubbed:
		// a database that never changes again costs no request, and a
		// fleet started again does not sweep every database once more.
		u.sweptAt = now.Add(-rand.N(db.GCInterval + 1))
		u.scrubbedAt = now.Add(-rand.N(db.ScrubInterval + 1))
		u.sweptTXID = max(u.sweptTXID, txid)
		u.scrubbedTXID = max(u.scrubbedTXID, txid)
	}
	sweep := db.Retention > 0 && db.GCInterval > 0 && now.Sub(u.sweptAt) >= db.GCInterval && txid != u.sweptTXID
	scrubNow := db.ScrubInterval > 0 && now.Sub(u.scrubbedAt) >= db.ScrubInterval && txid != u.scrubbedTXID
	u.mu.Unlock()
	if sweep {
		clean, ok := d.sweepOnce(u.ctx, db, u.co.Targets, log)
		if !ok {
			return
		}
		u.mu.Lock()
		u.sweptAt = now
		if clean {
			u.sweptTXID = txid
		}
		u.mu.Unlock()
	}
	if scrubNow {
		sc := scrub.New(scrub.Options{Targets: u.co.Targets, Repair: u, Interval: fleetScrubPass, Keys: db.Replicas[0].Keys.Keys(),
			Log: log, Metrics: d.scrubMetrics()})
		clean := true
		for url := range u.co.Targets {
			rep, err := sc.Pass(u.ctx, url)
			if err != nil || len(rep.Damaged) > 0 {
				clean = false
				if err != nil && u.ctx.Err() == nil {
					log.Warn("scrub pass failed; trying again at the next one", "target", url, "err", err)
				}
			}
		}
		u.mu.Lock()
		u.scrubbedAt = now
		if clean {
			u.scrubbedTXID = txid
		}
		u.mu.Unlock()
	}
}

// fleetScrubPass is how long the scrub of one database of a dir entry is
// spread over: the databases are scrubbed one after another.
const fleetScrubPass = time.Minute

// RewriteChunks asks the database's Replicator, woken if idle, to store
// every chunk again at its next snapshot (scrub.Repairer).
func (u *unit) RewriteChunks(url string) {
	if r, err := u.wake(); err == nil {
		r.RewriteChunks(url)
	}
}

// LostChangeSet tells the database's Replicator, woken if idle, that url
// lost a change set (scrub.Repairer).
func (u *unit) LostChangeSet(url string, first, last uint64, why string) {
	if r, err := u.wake(); err == nil {
		r.LostChangeSet(url, first, last, why)
	}
}
