package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDir takes an exclusive flock on DIR/LOCK and writes our pid into it.
//
// flock, not fcntl: an fcntl lock belongs to the process and is silently
// dropped when any descriptor of the file is closed (a second Open in the
// same process would both succeed and later unlock the first). A flock
// belongs to the open file description, so a second Open in this process
// conflicts exactly like another process does, and the kernel releases it
// when the owner dies, however it dies.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		return nil, fmt.Errorf("open spool lock %s: %w", path, err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &InUseError{Dir: dir, Pid: lockOwner(path)}
		}
		return nil, fmt.Errorf("lock spool %s: %w", path, err)
	}
	// The pid is only for the message a second process prints; it need not
	// be durable, so no fsync.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// lockOwner returns the pid written in the lock file, or 0 when it cannot be
// read (the owner may be between taking the lock and writing its pid).
func lockOwner(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// InUseError reports a spool locked by another process, or by another Open
// in this one.
type InUseError struct {
	Dir string
	Pid int // 0 when unknown
}

func (e *InUseError) Error() string {
	owner := "pid unknown"
	if e.Pid > 0 {
		owner = "pid " + strconv.Itoa(e.Pid)
	}
	return fmt.Sprintf("spool %s is in use by another ferry process (%s)", e.Dir, owner)
}

// Is makes errors.Is(err, ErrInUse) true.
func (e *InUseError) Is(target error) bool { return target == ErrInUse }
