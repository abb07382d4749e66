package follow

import (
	"context"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
)

// step is what a replica offers a follower that holds txid after.
type step struct {
	// Segment is the change set holding txid after+1; its Key is empty
	// when the replica holds none.
	Segment layout.Segment
	// Newest is the newest txid the replica holds, 0 when it holds
	// nothing.
	Newest uint64
	// Gap is set when the replica holds txids past after, yet no change
	// set holds after+1: the history the follower needs is gone.
	Gap bool
}

// nextFunc finds what comes after txid after in the replica in store. It
// is the only place that knows how change sets are found: the poll loop
// calls it and nothing else, so that finding the next change set by a
// key it can predict (one GET, no LIST) replaces this one function.
type nextFunc func(ctx context.Context, store objstore.Store, after uint64) (step, error)

// listNext finds the next change set by listing the replica's snapshots
// and change sets. Among the change sets that hold after+1 it takes the
// one reaching furthest: compaction leaves merged change sets beside the
// small ones for a while, and the merged one is fewer fetches.
func listNext(ctx context.Context, store objstore.Store, after uint64) (step, error) {
	l, err := layout.Read(ctx, store, layout.Snapshots|layout.Segments)
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
