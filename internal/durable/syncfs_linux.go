package durable

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// SyncFS makes everything written so far to the file system that holds
// f durable, the data and the metadata of every file on it, with one
// syncfs(2) and so one flush of the disk's cache, where fsyncing N files
// one by one costs up to N flushes. It returns an error if any write-back
// on that file system failed since f was opened: open f before writing
// what it must cover. It may also report a failure of a file that is none
// of the caller's, which errs on the safe side.
//
// ok is false, and nothing was done, where syncfs does not make that
// promise: before Linux 5.8 it reported no write-back errors at all, so
// a write that never reached the disk would pass for durable. The caller
// then fsyncs its files one by one.
func SyncFS(f *os.File) (ok bool, err error) {
	if !syncfsReports() {
		return false, nil
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return true, fmt.Errorf("syncfs %s: %w", f.Name(), err)
	}
	return true, nil
}

// syncfsReports says whether the running kernel's syncfs reports
// write-back errors (Linux 5.8 and later).
var syncfsReports = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 8)
})
