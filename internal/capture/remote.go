package capture

import (
	"context"
	"fmt"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/segment"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// remoteTop returns the highest txid any snapshot or change set in store
// names, 0 for an empty replica. A replica whose capture state was lost
// numbers on from there, so that no txid names two states.
func remoteTop(ctx context.Context, store objstore.Store) (uint64, error) {
	var top uint64
	for obj, err := range store.List(ctx, "snapshots/") {
		if err != nil {
			return 0, fmt.Errorf("list snapshots: %w", err)
		}
		if txid, err := snapshot.ParseManifestKey(obj.Key); err == nil {
			top = max(top, txid)
		}
	}
	rs, err := remoteSegments(ctx, store)
	if err != nil {
		return 0, err
	}
	for _, r := range rs {
		top = max(top, r.last)
	}
	return top, nil
}

// remoteSegments returns the txid ranges of the change sets store holds.
func remoteSegments(ctx context.Context, store objstore.Store) ([]txRange, error) {
	var rs []txRange
	for obj, err := range store.List(ctx, "segments/") {
		if err != nil {
			return nil, fmt.Errorf("list segments: %w", err)
		}
		if first, last, err := segment.ParseKey(obj.Key); err == nil {
			rs = append(rs, txRange{first, last})
		}
	}
	return rs, nil
}
