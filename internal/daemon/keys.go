package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrydb/ferry/internal/config"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/seal"
)

// checkKeys checks each of db's replicas against the database's keys
// before anything is written (seal.CheckReplica), and returns the ones
// that need a snapshot under the write key at once. A store that does not
// answer is let through, as at any start: a snapshot never reuses chunks
// named with another key, so the first one there will be whole if the key
// changed.
func (d *daemon) checkKeys(ctx context.Context, db config.DB, targets map[string]objstore.Store) ([]string, error) {
	var resnapshot []string
	for _, r := range db.Replicas {
		url := r.Target.String()
		rotated, err := seal.CheckReplica(ctx, targets[url], r.Keys)
		switch {
		case errors.Is(err, objstore.ErrKey):
			return nil, fmt.Errorf("replica %s of %s: %w", url, db.Path, err)
		case err != nil:
			d.o.Log.Warn("could not read the newest snapshot to check its key; going on", "db", db.Path, "target", url, "err", err)
		case rotated:
			d.o.Log.Info("the newest snapshot was written with another key; taking one with the current key now", "db", db.Path, "target", url)
			resnapshot = append(resnapshot, url)
		}
	}
	return resnapshot, nil
}
