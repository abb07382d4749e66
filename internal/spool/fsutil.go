package spool

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ferrydb/ferry/internal/durable"
)

const (
	dirPerm  = 0o700
	filePerm = 0o600
)

// syncDirs fsyncs each distinct directory in order.
func syncDirs(paths ...string) error {
	for i, p := range paths {
		seen := false
		for _, q := range paths[:i] {
			seen = seen || q == p
		}
		if seen {
			continue
		}
		if err := durable.SyncDir(p); err != nil {
			return err
		}
	}
	return nil
}

// mkdir creates path with owner-only permissions; an existing directory is
// fine.
func mkdir(path string) error {
	err := os.Mkdir(path, dirPerm)
	if errors.Is(err, os.ErrExist) {
		if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
			return nil
		}
	}
	return err
}

// writeFileSync writes b to a new file at path and fsyncs it.
func writeFileSync(path string, b []byte) error {
	return writeFileOpt(path, b, true)
}

// writeFile writes b to a new file at path without fsyncing it, for a
// caller that makes it durable later.
func writeFile(path string, b []byte) error {
	return writeFileOpt(path, b, false)
}

func writeFileOpt(path string, b []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncFile fsyncs an existing file, for data that arrived by hard link and
// whose writer may never have fsynced it.
func syncFile(path string) (int64, error) {
	f, err := os.Open(path) // fsync needs no write access on Linux
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// copyFileSync copies src into a new file through w, the file's writer
// or its accounting, and fsyncs the file with sync.
func copyFileSync(sync func() error, src string, w io.Writer) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := copyFile(w, in); err != nil {
		return err
	}
	return sync()
}

// copyFile copies in to w through a buffer the size of the file, up to
// 256 KiB: a spool of many small files should not allocate and clear
// 256 KiB for each. The file is wrapped so that io.CopyBuffer uses the
// buffer rather than *os.File's WriteTo, which would allocate its own.
func copyFile(w io.Writer, in *os.File) error {
	size := int64(-1)
	if fi, err := in.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	return copySized(w, in, size)
}

// copySized is copyFile from any reader of a regular file of size bytes,
// or of unknown size (-1).
func copySized(w io.Writer, r io.Reader, size int64) error {
	n := int64(256 << 10)
	if size >= 0 {
		n = min(n, max(size+1, 512))
	}
	buf := make([]byte, n)
	if size >= 0 && size < n {
		// A file that fits the buffer with room to spare: a read of a
		// regular file comes back short only at the file's end, so one
		// that returns exactly the size found has read it all, and the
		// read that would only return the end is not needed. One that
		// returns anything else (the file grew or shrank since) goes on
		// to the end as usual.
		m, err := r.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return werr
			}
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		case int64(m) == size:
			return nil
		}
	}
	_, err := io.CopyBuffer(w, struct{ io.Reader }{r}, buf)
	return err
}

// The files of an entry being built are written through bare
// descriptors: os.OpenFile tries to register every file with the
// runtime's poller, which for a regular file on Linux costs four fcntls
// and a failed epoll_ctl, as much again as opening, writing and closing
// a small file.

// openFd opens path with flag (O_CLOEXEC added) and perm.
func openFd(path string, flag int, perm uint32) (int, error) {
	for {
		fd, err := syscall.Open(path, flag|syscall.O_CLOEXEC, perm)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// fdFile is an open descriptor and its path, for errors.
type fdFile struct {
	fd   int
	path string
}

func (f fdFile) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := syscall.Write(f.fd, p[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, &os.PathError{Op: "write", Path: f.path, Err: err}
		}
		n += m
	}
	return n, nil
}

func (f fdFile) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(f.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: f.path, Err: err}
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f fdFile) truncate(size int64) error {
	for {
		err := syscall.Ftruncate(f.fd, size)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "truncate", Path: f.path, Err: err}
		}
		return nil
	}
}

func (f fdFile) sync() error {
	for {
		err := syscall.Fsync(f.fd)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "sync", Path: f.path, Err: err}
		}
		return nil
	}
}

// close closes the descriptor. Linux closes it even when close fails, so
// it is never retried.
func (f fdFile) close() error {
	if err := syscall.Close(f.fd); err != nil {
		return &os.PathError{Op: "close", Path: f.path, Err: err}
	}
	return nil
}

// isNoSpace reports a full file system (or quota).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// removeAllQuiet removes path and everything under it. It is used only on
// names that nobody will look at again (staging dirs, deleted entries), where
// a failure leaves garbage that the next Open sweeps from tmp/.
func removeAllQuiet(path string) { _ = os.RemoveAll(path) }

// removeEntryQuiet is removeAllQuiet for an entry's directory: the names
// an entry holds are known, and removing them by name spares the listing
// that RemoveAll would make for each of thousands of small entries.
func removeEntryQuiet(dir string) {
	for _, name := range []string{dataName, metaName, metaTmpName} {
		os.Remove(filepath.Join(dir, name))
	}
	if os.Remove(dir) != nil {
		removeAllQuiet(dir)
	}
}

func parent(path string) string { return filepath.Dir(path) }

// moveEntry renames an entry's directory from one place in the spool to
// another. Every destination is named by the entry's own ID, so it never
// exists; the plain rename(2) skips the lstat of the destination that
// os.Rename makes first (only to refuse replacing a directory), a path
// walk that cost about a quarter of each move on the way of every entry.
func moveEntry(from, to string) error {
	for {
		err := syscall.Rename(from, to)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
		}
		return nil
	}
}
