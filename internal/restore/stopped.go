package restore

import "fmt"

// StoppedError is a restore that could not go past a change set: the
// object was missing, damaged or unreadable. The database had been rebuilt
// up to TXID, a committed state the replica proves, but it was not written
// out, since it is not the state asked for; restoring to TXID explicitly
// gets it.
type StoppedError struct {
	TXID uint64 // the last transaction applied before the failure
	Err  error
}

func (e *StoppedError) Error() string {
	return fmt.Sprintf("%v (the replica proves every txid up to %d)", e.Err, e.TXID)
}

func (e *StoppedError) Unwrap() error { return e.Err }
