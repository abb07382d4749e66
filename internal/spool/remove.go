package spool

import (
	"crypto/rand"
	"os"
)

// RemoveUnused removes the spool directory dir unless a process holds it:
// for a start that failed and must leave nothing behind. It takes the
// spool's lock and moves the directory aside while holding it, so that a
// process that opened the spool in the meantime keeps it (the lock
// fails), and one that opens it afterwards starts a new one rather than
// writing into a directory being deleted.
func RemoveUnused(dir string) {
	if _, err := os.Lstat(dir); err != nil {
		return
	}
	sp, err := Open(dir, Options{})
	if err != nil {
		return
	}
	aside := dir + ".removing-" + rand.Text()
	err = os.Rename(dir, aside)
	sp.Close()
	if err == nil {
		os.RemoveAll(aside)
	}
}
