package spool

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Spare entry directories. Building an entry costs a directory and two
// files, and finishing it removes all three: for a small file that is
// most of what spooling it costs, and on ext4 each new inode also means a
// search of the inode table. So Done keeps the directory of a small entry
// that this process wrote, files and all, in DIR/spare/, and the next
// Enqueue or batch builds its entry in it, overwriting the files in place
// (a spare stands in for a new directory in tmp/).
//
// A spare is only reused after the Done that made it has returned, so the
// removal of its name from checkout/ is durable before a byte of it
// changes. Until it is renamed into a queue it is as unreachable as
// anything in tmp/. Spares outlive the process: the next Open keeps those
// that hold just a data file and a meta.json of one name each (whatever
// their bytes: they are overwritten) and removes anything else, so that
// a push after a push creates no entry directory at all.
//
// Only an entry whose data file has no other name is kept (item.own): one
// that came by hard link (EnqueueFile with move) may have another, whose
// bytes an overwrite would change.
const (
	spareName = "spare"
	// maxSpares and maxSpareSize bound what spares hold on disk, outside
	// Options.MaxBytes: at most maxSpares x maxSpareSize (16 MiB) of data
	// already shipped. A larger entry costs more to write than to create.
	maxSpares    = 1024
	maxSpareSize = 16 << 10
)

// spareDir returns the directory a finished entry of this size should be
// renamed to, in spare/ or tmp/, and whether it will be kept as a spare.
func (s *Spool) spareDir(it *item) (string, bool) {
	s.mu.Lock()
	keep := it.own && it.size <= maxSpareSize && len(s.spares)+s.sparing < maxSpares && !s.closed
	if keep {
		s.sparing++
	}
	made := s.spareMade
	s.mu.Unlock()
	if keep && !made {
		// Made on the first need, so that a spool that never keeps a
		// spare looks as it always has.
		if err := mkdir(filepath.Join(s.dir, spareName)); err != nil {
			keep = false
			s.mu.Lock()
			s.sparing--
			s.mu.Unlock()
		} else {
			s.mu.Lock()
			s.spareMade = true
			s.mu.Unlock()
		}
	}
	if keep {
		return filepath.Join(s.dir, spareName, string(it.id)), true
	}
	return filepath.Join(s.dir, tmpName, string(it.id)+".done"), false
}

// keepSpare files dir, renamed there by Done whose fsync has succeeded,
// as a spare; ok false means that fsync failed and dir is removed.
func (s *Spool) keepSpare(dir string, ok bool) {
	s.mu.Lock()
	s.sparing--
	if ok && !s.closed {
		s.spares = append(s.spares, dir)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	removeEntryQuiet(dir)
}

// takeSpare returns a spare directory to build an entry in, or "".
func (s *Spool) takeSpare() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.spares)
	if n == 0 {
		return ""
	}
	d := s.spares[n-1]
	s.spares = s.spares[:n-1]
	s.spareUses++
	return d
}

// loadSpares keeps, as spares, the directories in spare/ that an earlier
// owner left there fit for reuse, up to maxSpares, and removes the rest.
func (s *Spool) loadSpares() error {
	dir := filepath.Join(s.dir, spareName)
	names, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, de := range names {
		p := filepath.Join(dir, de.Name())
		if de.IsDir() && len(s.spares) < maxSpares && fitSpare(p) {
			s.spares = append(s.spares, p)
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	s.spareMade = true
	return nil
}

// fitSpare reports whether the directory p holds a data file and a
// meta.json, each a regular file with no other name, and nothing else,
// with data no larger than maxSpareSize: what Done leaves in a spare.
func fitSpare(p string) bool {
	names, err := os.ReadDir(p)
	if err != nil || len(names) != 2 {
		return false
	}
	for _, name := range []string{dataName, metaName} {
		fi, err := os.Lstat(filepath.Join(p, name))
		if err != nil || !fi.Mode().IsRegular() {
			return false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Nlink != 1 || name == dataName && fi.Size() > maxSpareSize {
			return false
		}
	}
	return true
}

// openEntryFile opens the file name of an entry being built in dir for
// writing: a new file, or in a spare the file an earlier entry left,
// which the caller overwrites from its start and then cuts to length
// with truncate. Overwriting spares allocating an inode and,
// for a file of about the same size, its blocks; opening with O_TRUNC
// would free the blocks, and make ext4 start writing the file back at
// its close.
func openEntryFile(path string, reuse bool) (fdFile, error) {
	flag := syscall.O_WRONLY | syscall.O_CREAT | syscall.O_EXCL
	if reuse {
		flag = syscall.O_WRONLY | syscall.O_CREAT
	}
	fd, err := openFd(path, flag, filePerm)
	return fdFile{fd, path}, err
}

// writeEntryFile writes b as a file of an entry being built, as
// openEntryFile opens it, without fsyncing it.
func writeEntryFile(path string, b []byte, reuse bool) error {
	return writeEntryFileOpt(path, b, reuse, false)
}

// writeEntryFileSync is writeEntryFile that also fsyncs the file.
func writeEntryFileSync(path string, b []byte, reuse bool) error {
	return writeEntryFileOpt(path, b, reuse, true)
}

func writeEntryFileOpt(path string, b []byte, reuse, sync bool) error {
	f, err := openEntryFile(path, reuse)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && reuse {
		err = f.truncate(int64(len(b)))
	}
	if err == nil && sync {
		err = f.sync()
	}
	if cerr := f.close(); err == nil {
		err = cerr
	}
	return err
}
