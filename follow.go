package ferry

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/internal/follow"
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/target"
)

// FollowOptions tune Follow.
type FollowOptions struct {
	// Interval is how often the replica is polled once caught up
	// (default 1s).
	Interval time.Duration
	// KeyFiles are the keys of an encrypted replica, as for Restore.
	KeyFiles []string
	Log      *slog.Logger
}

// Follow keeps the database at dbPath a read replica of the database in
// replicaURL until ctx ends: it restores the newest state, or carries on
// from the state dbPath holds, then applies each new transaction as it
// appears. Readers of dbPath, in any process, only ever see committed
// states of the source, and nothing else may write to it. It returns nil
// when ctx ends, and an error when it cannot start.
func Follow(ctx context.Context, replicaURL, dbPath string, o FollowOptions) error {
	dbPath, err := filepath.Abs(dbPath)
	if err != nil {
		return err
	}
	var ring *seal.Ring
	if len(o.KeyFiles) > 0 {
		if ring, err = loadRing("", o.KeyFiles); err != nil {
			return err
		}
	}
	store, err := openURL(ctx, replicaURL, ring, target.Options{Check: true, MustExist: true})
	if err != nil {
		return err
	}
	return follow.Run(ctx, store, dbPath, follow.Options{Replica: replicaURL, Interval: o.Interval, Log: o.Log, Keys: ring.Keys()})
}
