package lease

import (
	"errors"
	"fmt"
	"time"
)

// Errors that callers branch on.
var (
	// ErrHeld means another holder has the lease and it has not expired.
	// The error returned is a *HeldError naming the holder.
	ErrHeld = errors.New("lease is held")
	// ErrLost means the lease was taken over, or released, since this
	// holder last wrote it.
	ErrLost = errors.New("lease lost")
)

// HeldError reports a lease that another holder has. It matches ErrHeld.
type HeldError struct {
	Key     string // the lease object's key
	Holder  string
	Expires time.Time
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("lease %s is held by %q until %s (wait for it to expire or be released)",
		e.Key, e.Holder, e.Expires.UTC().Format(time.RFC3339Nano))
}

// Unwrap makes a HeldError match ErrHeld.
func (e *HeldError) Unwrap() error { return ErrHeld }
