package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/capture"
	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/restore"
)

// restoreIfMissing answers restore-if-db-not-exists for db: when the
// database file is missing, the newest state is restored from the first
// of its replicas that holds one, and the replicator is told to carry that
// replica's history on, so that the restart adds no new lineage and
// uploads no snapshot again. With nothing to restore anywhere (the very
// first start of a deployment) it waits for the application to create
// the database. It returns nil when the database was there all along.
func (d *daemon) restoreIfMissing(ctx context.Context, db config.DB, stores map[string]objstore.Store) (*capture.Continuation, error) {
	if _, err := os.Stat(db.Path); !errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	log := d.o.Log.With("db", db.Path)
	var unreadable []string
	for _, rp := range db.Replicas {
		url := rp.Target.String()
		store := stores[url]
		cat, err := restore.ReadCatalog(ctx, store)
		if err != nil {
			unreadable = append(unreadable, fmt.Sprintf("%s: %v", url, err))
			continue
		}
		if cat.Empty() {
			continue
		}
		plan, err := cat.PlanTXID(0)
		if err != nil {
			return nil, fmt.Errorf("database %s is missing and replica %s cannot restore it: %w", db.Path, url, err)
		}
		res, err := restore.ToFile(ctx, store, plan, db.Path, restore.Options{Keys: rp.Keys.Keys()})
		if err != nil {
			return nil, fmt.Errorf("database %s is missing; restore from %s: %w", db.Path, url, err)
		}
		log.Info("database was missing; restored it", "target", url, "txid", res.TXID, "snapshot", plan.Snapshot.TXID)
		return &capture.Continuation{URL: url, TXID: res.TXID, Time: res.Time, Snapshot: plan.Snapshot.TXID}, nil
	}
	if len(unreadable) > 0 {
		// A replica that could not be read may hold the history: a new
		// one must not be started over it.
		return nil, fmt.Errorf("database %s is missing and no replica could be read to restore it: %s", db.Path, strings.Join(unreadable, "; "))
	}
	log.Info("database is missing and every replica is empty; waiting for the application to create it")
	for {
		if _, err := os.Stat(db.Path); err == nil {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
