package follow

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// dbLock is the follower's hold on one database path.
type dbLock struct {
	path string
	f    *os.File
}

// lock takes an exclusive flock on DB_PATH-ferry-follow.lock, for as long
// as the follower runs: two followers writing one database would each
// apply transactions over a state the other changed. A flock belongs to
// the open file, so the kernel releases it when the follower dies,
// however it dies, and a second Follower in the same process conflicts
// like another process would.
func lock(dbPath string) (*dbLock, error) {
	path := dbPath + "-ferry-follow.lock"
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if !errors.Is(err, syscall.EINTR) {
				break
			}
		}
		if err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				owner := "pid unknown"
				if b, rerr := os.ReadFile(path); rerr == nil && strings.TrimSpace(string(b)) != "" {
					owner = "pid " + strings.TrimSpace(string(b))
				}
				return nil, fmt.Errorf("%s is followed by another ferry follow (%s)", dbPath, owner)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// A follower that failed to start removes the file it locked
		// (see release); one that opened it just before may then hold a
		// lock on a file no longer at the path, while a third locks the
		// new one. Only a lock on the file at the path counts.
		held, herr := f.Stat()
		named, nerr := os.Stat(path)
		if herr == nil && nerr == nil && os.SameFile(held, named) {
			// The pid is only for the message another follower prints.
			if err := f.Truncate(0); err == nil {
				f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
			}
			return &dbLock{path: path, f: f}, nil
		}
		f.Close()
	}
}

// release lets the lock go; with remove, it removes the lock file first,
// for a follower that leaves nothing behind.
func (l *dbLock) release(remove bool) {
	if remove {
		os.Remove(l.path)
	}
	l.f.Close()
}
