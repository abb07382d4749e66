package artifact

import (
	"errors"
	"fmt"

	"github.com/ferrydb/ferry/internal/lease"
)

// Errors that callers branch on.
var (
	// ErrInvalid means an artifact read back from the store is malformed
	// or unsafe: a manifest that does not parse or breaks a rule, or a tar
	// that disagrees with its manifest or holds an entry that could write
	// outside the destination. Errors about one entry are *EntryError.
	// Upload returns it too, before storing anything, for a directory
	// whose artifact Download would refuse, such as one with a symlink
	// that leads outside it.
	ErrInvalid = errors.New("invalid artifact")
	// ErrDestNotEmpty means Download's destination exists and is not an
	// empty directory.
	ErrDestNotEmpty = errors.New("destination exists and is not an empty directory")
	// ErrLeaseHeld means another holder has the lease and it has not
	// expired. The error returned is a *HeldError naming the holder.
	ErrLeaseHeld = lease.ErrHeld
	// ErrLeaseLost means the lease was taken over, or released, since this
	// holder last wrote it.
	ErrLeaseLost = lease.ErrLost
)

// EntryError reports an artifact entry that was refused, naming it. It
// matches ErrInvalid.
type EntryError struct {
	Key    string // the artifact's key
	Path   string // the entry's path as the manifest or tar gives it
	Reason string
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("artifact %s: entry %q: %s", e.Key, e.Path, e.Reason)
}

// Unwrap makes an EntryError match ErrInvalid.
func (e *EntryError) Unwrap() error { return ErrInvalid }

// HeldError reports a lease that another holder has. It matches
// ErrLeaseHeld.
type HeldError = lease.HeldError

// invalidf returns an error matching ErrInvalid about the artifact as a
// whole.
func invalidf(key, format string, args ...any) error {
	return fmt.Errorf("artifact %s: %w: %s", key, ErrInvalid, fmt.Sprintf(format, args...))
}

// entryErr returns an *EntryError.
func entryErr(key, path, format string, args ...any) error {
	return &EntryError{Key: key, Path: path, Reason: fmt.Sprintf(format, args...)}
}
