package restore

import "fmt"

// StoppedError is a restore that cannot reach the state asked for: a
// change set or snapshot on the way is missing, damaged or unreadable.
// TXID is the newest committed state the replica proves before that
// point. Nothing was written, since that is not the state asked for;
// restoring to TXID explicitly gets it.
type StoppedError struct {
	TXID uint64 // the last transaction applied before the failure
	Err  error
}

func (e *StoppedError) Error() string {
	return fmt.Sprintf("%v (the replica proves every txid up to %d)", e.Err, e.TXID)
}

func (e *StoppedError) Unwrap() error { return e.Err }
