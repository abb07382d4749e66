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
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
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
	if _, err := io.CopyBuffer(w, in, make([]byte, 256<<10)); err != nil {
		return err
	}
	return dst.Sync()
}

// isNoSpace reports a full file system (or quota).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// removeAllQuiet removes path and everything under it. It is used only on
// names that nobody will look at again (staging dirs, deleted entries), where
// a failure leaves garbage that the next Open sweeps from tmp/.
func removeAllQuiet(path string) { _ = os.RemoveAll(path) }

func parent(path string) string { return filepath.Dir(path) }
