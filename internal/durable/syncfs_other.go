//go:build !linux

package durable

import "os"

// SyncFS reports ok false: outside Linux there is no syncfs whose
// write-back errors can be trusted, and callers fsync file by file.
func SyncFS(f *os.File) (ok bool, err error) { return false, nil }
