package capture

import (
	"context"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/segment"
)

// remoteTop returns the highest txid any snapshot or change set in store
// names, 0 for an empty replica. A replica whose capture state was lost
// numbers on from there, so that no txid names two states.
func remoteTop(ctx context.Context, store objstore.Store) (uint64, error) {
	l, err := layout.Read(ctx, store, layout.Snapshots|layout.Segments, segment.Heads(store))
	if err != nil {
		return 0, err
	}
	return l.Newest(), nil
}

// remoteSegments returns the txid ranges of the change sets store holds.
func remoteSegments(ctx context.Context, store objstore.Store) ([]txRange, error) {
	l, err := layout.Read(ctx, store, layout.Segments, segment.Heads(store))
	if err != nil {
		return nil, err
	}
	rs := make([]txRange, len(l.Segments))
	for i, s := range l.Segments {
		rs[i] = txRange{s.First, s.Last}
	}
	return rs, nil
}
