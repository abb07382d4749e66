package seal

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/snapshot"
)

// CheckReplica reads the header of the newest snapshot in store, a Store
// with ring (nil without encryption), before a replicator writes there. It
// refuses a replica that holds plaintext while ring is set, or one
// encrypted with keys ring lacks: the two must never mix in one history.
// It reports rotated when that snapshot's chunks were named with another
// key than ring writes with, so that the replicator takes a snapshot
// under the new key at once and the new key alone restores the latest
// state. A store that does not answer is no refusal (err matches neither
// objstore.ErrKey): the caller decides whether to go on.
func CheckReplica(ctx context.Context, store objstore.Store, ring *Ring) (rotated bool, err error) {
	l, err := layout.Read(ctx, store, layout.Snapshots, nil)
	if err != nil || len(l.Snapshots) == 0 {
		return false, err
	}
	infos, err := snapshot.Describe(ctx, store, l.Snapshots[len(l.Snapshots)-1:])
	if err == nil && infos[0].Err != nil {
		err = infos[0].Err
	}
	switch {
	case errors.Is(err, ErrNotEncrypted):
		return false, fmt.Errorf("%w: the replica holds history written without encryption; an encrypted database needs a replica URL of its own", ErrNotEncrypted)
	case errors.Is(err, ErrNoKey):
		return false, fmt.Errorf("%w: the replica is encrypted; give its key (encryption: key-file)", ErrNoKey)
	case errors.Is(err, ErrWrongKey):
		return false, fmt.Errorf("%w; to rotate keys, give the old key as a read-only key", err)
	case err != nil:
		return false, err
	}
	return infos[0].AddressKey != ring.Addresser().KeyTag(), nil
}
