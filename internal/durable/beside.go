package durable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// CreateBeside creates a temporary file in which out, or a part of it,
// is built: in out's directory, hidden, named "."+base(out)+infix and a
// random suffix. The file is locked (flock) for as long as it is open,
// which is how RemoveLeftBehind tells a file in use from one whose
// process died; so a caller that renames it into place does so before
// closing it. On Linux a flock has no bearing on the fcntl locks SQLite
// takes when it opens the same file to check it.
func CreateBeside(out, infix string) (*os.File, error) {
	return makeBeside(out, infix, os.CreateTemp)
}

// MkdirBeside is CreateBeside for a directory in which out is built (an
// artifact unpacked, say): it returns the new directory open and locked
// until closed.
func MkdirBeside(out, infix string) (*os.File, error) {
	return makeBeside(out, infix, func(dir, pattern string) (*os.File, error) {
		path, err := os.MkdirTemp(dir, pattern)
		if err != nil {
			return nil, err
		}
		d, err := os.Open(path)
		if err != nil {
			os.Remove(path)
		}
		return d, err
	})
}

// makeBeside makes a file or directory with create, named as CreateBeside
// says, and locks it. A clean-up elsewhere may take the new one between
// its making and its lock: the lock then holds one that no longer has
// the name, and it is made again.
func makeBeside(out, infix string, create func(dir, pattern string) (*os.File, error)) (*os.File, error) {
	dir, prefix := filepath.Dir(out), "."+filepath.Base(out)+infix
	for range 3 {
		f, err := create(dir, prefix+"*")
		if err != nil {
			return nil, err
		}
		if err := flock(f); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if stillNamed(f) {
			return f, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("make a temporary file or directory for %s: removed by another process each time", out)
}

// RemoveLeftBehind removes the files and directories CreateBeside and
// MkdirBeside made for out and infix that no process holds any more, left behind by a run that died (kill
// -9, a crash, a power loss), with the -wal, -shm and -journal files
// SQLite may have left beside them. A restore that keeps failing half way
// through would otherwise leave a hidden file as large as the database at
// each attempt, until the disk is full. A run calls it once, before its
// first CreateBeside.
func RemoveLeftBehind(out, infix string) error {
	return removeLeftBehind(filepath.Dir(out), "."+filepath.Base(out)+infix)
}

// removeLeftBehind removes the files named prefix* in dir that no process
// holds locked, with the -wal, -shm and -journal files SQLite may have
// left beside them, and returns the first failure to remove one.
func removeLeftBehind(dir, prefix string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		isDir := e.IsDir()
		if !strings.HasPrefix(name, prefix) || !(isDir || e.Type().IsRegular()) || sqliteSidecar(name) {
			continue
		}
		path := filepath.Join(dir, name)
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // another clean-up took it
		}
		if err != nil {
			return fmt.Errorf("look at %s, left behind by an earlier run: %w", path, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				continue // in use
			}
			return fmt.Errorf("lock %s: %w", path, err)
		}
		// Removed while locked, so that its creator, if it is only now
		// taking its lock, finds the name gone.
		if isDir {
			err := os.RemoveAll(path)
			f.Close()
			if err != nil {
				return fmt.Errorf("remove %s, left behind by an earlier run: %w", path, err)
			}
			continue
		}
		for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				f.Close()
				return fmt.Errorf("remove %s, left behind by an earlier run: %w", p, err)
			}
		}
		f.Close()
	}
	return nil
}

// sqliteSidecar reports the names of the files SQLite keeps beside a
// database, which go with it.
func sqliteSidecar(name string) bool {
	return strings.HasSuffix(name, "-wal") || strings.HasSuffix(name, "-shm") || strings.HasSuffix(name, "-journal")
}

// flock takes f's lock, waiting for nobody: a file just created is
// locked only by a clean-up about to remove it.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// stillNamed reports whether f is still the file its name points to.
func stillNamed(f *os.File) bool {
	at, err := os.Stat(f.Name())
	if err != nil {
		return false
	}
	held, err := f.Stat()
	return err == nil && os.SameFile(at, held)
}
