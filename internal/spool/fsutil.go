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

// copyFileSync copies src into a new file dst through w's accounting and
// fsyncs it.
func copyFileSync(dst *os.File, src string, w io.Writer) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := copyFile(w, in); err != nil {
		return err
	}
	return dst.Sync()
}

// copyFile copies in to w through a buffer the size of the file, up to
// 256 KiB: a spool of many small files should not allocate and clear
// 256 KiB for each. The file is wrapped so that io.CopyBuffer uses the
// buffer rather than *os.File's WriteTo, which would allocate its own.
func copyFile(w io.Writer, in *os.File) error {
	n := int64(256 << 10)
	if fi, err := in.Stat(); err == nil && fi.Mode().IsRegular() {
		n = min(n, max(fi.Size()+1, 512))
	}
	_, err := io.CopyBuffer(w, struct{ io.Reader }{in}, make([]byte, n))
	return err
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
