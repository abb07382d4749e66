package follow

import (
	"context"
	"errors"
	"time"

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
	// Chained is set when a listing shows a change set ending at after:
	// the replicator's chain reached after, so the next change set is
	// named after+1 (see Follower.unchained).
	Chained bool
}

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

// snapshotCheckEvery is how often an idle follower spends its request of
// the interval on a listing of the replica's snapshots instead of the next
// change set's key. A chain can end without the break marker that says so
// (the replicator lost it with a full disk, or a new replicator started
// over the replica), and then the next change set's key stays missing
// for good; a snapshot newer than the follower's txid tells. It costs one
// small LIST, of a prefix that holds one object per snapshot kept.
const snapshotCheckEvery = 10 * time.Minute

// snapshotCheck lists the replica's snapshots, and lists the rest too
// when one is newer than after; otherwise it reports nothing new, as a
// missing key would.
func snapshotCheck(ctx context.Context, store objstore.Store, after uint64) (step, error) {
	l, err := layout.Read(ctx, store, layout.Snapshots, nil)
	if err != nil {
		return step{}, err
	}
	if len(l.Snapshots) == 0 || l.Snapshots[len(l.Snapshots)-1].TXID <= after {
		return step{}, nil
	}
	return listNext(ctx, store, after)
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
		st.Chained = st.Chained || s.Last == after
		if s.First <= after+1 && s.Last > after && s.Last > st.Segment.Last {
			st.Segment = s
		}
	}
	st.Gap = st.Segment.Key == "" && st.Newest > after
	return st, nil
}
