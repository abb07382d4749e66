package follow

import (
	"context"
	"errors"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/segment"
)

// step is what a replica offers a follower that holds txid after.
type step struct {
	// Segment is the change set holding txid after+1; its Key is empty
	// when the replica holds none.
	Segment layout.Segment
	// Newest is the newest txid the replica holds, 0 when it holds
	// nothing or the step was found without a listing.
	Newest uint64
	// Gap is set when the replica holds txids past after, yet no change
	// set holds after+1: the history the follower needs is gone.
	Gap bool
}

// nextFunc finds what comes after txid after in the replica in store.
type nextFunc func(ctx context.Context, store objstore.Store, after uint64) (step, error)

// getNext finds the change set after txid after by the one key it can
// have: a replicator names each change set by its first txid
// (layout.ChangeSetKey), so the next one is after+1's. One small ranged
// GET reads its header, and no LIST is made: an idle follower costs one
// request that finds nothing per interval. A break marker under that key
// (the replicator's chain ended at after) is told by a listing, which
// finds the snapshot the history carries on from. The follower lists
// instead when a missing key may not mean "nothing new" (see poll).
func getNext(ctx context.Context, store objstore.Store, after uint64) (step, error) {
	key := layout.ChangeSetKey(after + 1)
	h, err := segment.ReadHead(ctx, store, key)
	if objstore.IsNotFound(err) {
		return step{}, nil
	}
	if err != nil && !errors.Is(err, objstore.ErrCorrupt) {
		return step{}, err
	}
	if err != nil || h.Break {
		// A damaged header, or the end of the chain: the listing sorts
		// out what the replica holds instead.
		return listNext(ctx, store, after)
	}
	return step{Segment: layout.Segment{Key: key, First: h.First, Last: h.Last}}, nil
}

// listNext finds the next change set by listing the replica's snapshots
// and change sets. Among the change sets that hold after+1 it takes the
// one reaching furthest: compaction leaves merged change sets beside the
// small ones for a while, and the merged one is fewer fetches.
func listNext(ctx context.Context, store objstore.Store, after uint64) (step, error) {
	l, err := layout.Read(ctx, store, layout.Snapshots|layout.Segments, segment.Heads(store))
	if err != nil {
		return step{}, err
	}
	st := step{Newest: l.Newest()}
	for _, s := range l.Segments {
		if s.First <= after+1 && s.Last > after && s.Last > st.Segment.Last {
			st.Segment = s
		}
	}
	st.Gap = st.Segment.Key == "" && st.Newest > after
	return st, nil
}
