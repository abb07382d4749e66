package daemon

import (
	"context"
	"reflect"
	"slices"
	"strings"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/lease"
)

// reload replaces the running config's databases with next's: each
// database listed by path and each dir entry that is new starts, one that
// is gone stops (shipping what it captured first), one whose settings
// changed starts again, and the others go on untouched. A database that
// fails to start is logged and left out; the rest still take effect.
// Settings outside dbs take effect at the next start, and the log says
// so.
func (d *daemon) reload(ctx context.Context, next *config.Config) {
	log := d.o.Log
	if later := restartOnly(d.cfg, next); len(later) > 0 {
		log.Warn("reloaded the config; these settings take effect at the next start", "settings", strings.Join(later, ", "))
	}
	curDBs, nextDBs := byName(d.listed), byName(next.DBs)
	added, removed, changed := 0, 0, 0
	// Stop first: a database that moves from a dir entry to its own
	// entry, or back, must be let go before it is taken again.
	for name, db := range curDBs {
		if n, ok := nextDBs[name]; ok && reflect.DeepEqual(n, db) {
			continue
		}
		if _, ok := nextDBs[name]; ok {
			changed++
		} else {
			removed++
		}
		d.drop(db)
	}
	for _, pathFirst := range []bool{true, false} {
		for _, db := range next.DBs {
			if (db.Dir == nil) != pathFirst {
				continue
			}
			if c, ok := curDBs[db.Name()]; ok && reflect.DeepEqual(c, db) {
				continue
			}
			if _, ok := curDBs[db.Name()]; !ok {
				added++
			}
			var err error
			if db.Dir == nil {
				err = d.openDB(ctx, db)
			} else {
				err = d.openEntry(ctx, db)
			}
			if err != nil {
				log.Error("reloaded the config; could not start one of its entries, which is left out until the next reload", "entry", db.Name(), "err", err)
			}
		}
	}
	d.listed = next.DBs
	log.Info("reloaded the config", "source", next.Source, "added", added, "removed", removed, "changed", changed,
		"dbs", len(d.fleet.all()))
}

// drop stops the databases of one entry of the running config.
func (d *daemon) drop(db config.DB) {
	if db.Dir != nil {
		d.fleet.mu.Lock()
		var e *dirEntry
		for _, x := range d.fleet.entries {
			if x.db.Dir.Path == db.Dir.Path {
				e = x
			}
		}
		d.fleet.mu.Unlock()
		if e != nil {
			d.fleet.dropEntry(e)
		}
		return
	}
	u := d.fleet.get(db.Path)
	if u == nil || u.entry != nil {
		return
	}
	d.fleet.remove(u)
	d.mu.Lock()
	d.leases = slices.DeleteFunc(d.leases, func(l *lease.Lease) bool { return slices.Contains(u.leases, l) })
	d.mu.Unlock()
	d.release(u.leases)
}

// byName maps entries by what names them: a database's path, or a
// directory.
func byName(dbs []config.DB) map[string]config.DB {
	m := make(map[string]config.DB, len(dbs))
	for _, db := range dbs {
		m[db.Name()] = db
	}
	return m
}

// restartOnly lists the settings outside dbs that differ between the
// config the daemon started with and another: a reload does not apply
// them.
func restartOnly(a, b *config.Config) []string {
	var out []string
	add := func(name string, differ bool) {
		if differ {
			out = append(out, name)
		}
	}
	add("addr", a.Addr != b.Addr)
	add("spool", a.Spool != b.Spool)
	add("log-level", a.LogLevel != b.LogLevel)
	add("log-format", a.LogFormat != b.LogFormat)
	add("healthz-max-lag", a.HealthzMaxLag != b.HealthzMaxLag)
	add("shutdown-timeout", a.ShutdownTimeout != b.ShutdownTimeout)
	add("files", !reflect.DeepEqual(a.Files, b.Files))
	return out
}
