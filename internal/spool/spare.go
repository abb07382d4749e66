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
// anything in tmp/, and Open sweeps spare/ as it sweeps tmp/.
//
// Only an entry whose data file has no other name is kept (item.own): one
// that came by hard link (EnqueueFile with move) may have another, whose
// bytes an overwrite would change.
const (
	spareName = "spare"
	// maxSpares and maxSpareSize bound what spares hold on disk, outside
	// Options.MaxBytes: at most maxSpares x maxSpareSize bytes of data
	// already shipped. A larger entry costs more to write than to create.
	maxSpares    = 1024
	maxSpareSize = 64 << 10
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

// dropSpares removes the spares, for Close: the data they hold was
// shipped, and is not to stay on disk once the spool is closed.
func (s *Spool) dropSpares() {
	s.mu.Lock()
	spares := s.spares
	s.spares = nil
	s.mu.Unlock()
	for _, d := range spares {
		removeEntryQuiet(d)
	}
}

// sweepSpares removes what a previous owner left in spare/.
func (s *Spool) sweepSpares() error {
	dir := filepath.Join(s.dir, spareName)
	names, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, de := range names {
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return err
		}
	}
	s.spareMade = true
	return nil
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
