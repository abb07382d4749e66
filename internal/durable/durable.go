// Package durable holds the file-system steps that make a write survive a
// power loss, shared by every part of ferry that writes local files: the
// spool, the file:// store, restores and artifact downloads.
package durable

import (
	"fmt"
	"os"
)

// SyncDir fsyncs a directory, making the names created, renamed or removed
// in it durable. Without it a power loss can undo a rename that returned,
// leaving an entry, an object or a restored database that was reported
// written but is not there.
func SyncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", path, err)
	}
	return nil
}
