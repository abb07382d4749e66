package capture

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ferrydb/ferry/internal/wal"
)

// checkpointHold holds SQLite's checkpoint lock while the application
// commits, so that ferry is its only checkpointer then.
//
// Why: once the log is past the application's wal_autocheckpoint (1,000
// frames by default), SQLite runs a PASSIVE checkpoint after each of its
// commits. While ferry's read mark keeps the log long, nearly every one of
// them finds nothing to copy, but each still takes and drops the
// checkpoint lock and tries ferry's read-mark slot, three fcntl calls in
// the application's commit; the few that do copy sync the database file
// there too. Ferry runs the checkpoints itself anyway (see
// maybeCheckpoint). With the lock held, SQLite gives up such a checkpoint
// at its first fcntl, as it does whenever another connection checkpoints.
//
// The lock is an open file description (OFD) lock on the checkpoint lock's
// byte of the -shm file. It conflicts with SQLite's own fcntl locks, those
// of ferry's connections in this process included, so it is let go around
// ferry's own checkpoints. The kernel drops it when the process dies. It
// is let go, and not taken, while the wal-index header is unsettled: a
// connection that must recover the index needs the checkpoint lock.
//
// A nil *checkpointHold holds nothing; its methods do nothing.
type checkpointHold struct {
	shm   *shmFile
	alone bool // see Options.AloneInProcess

	mu   sync.Mutex // the RESTART checkpoint's goroutine lets go and takes too
	held bool
	buf  [wal.IndexHeaderSize]byte
}

// shmFile is a -shm file opened for checkpoint holds.
//
// It is not closed while the file may be in use: the process's POSIX
// locks on a file, SQLite's read marks and writer locks of ferry's
// connections and of an application that embeds ferry, all go when any
// descriptor of that file is closed. A hold that ends after ferry's
// connections closed closes it when ferry is alone in the process;
// otherwise it gives the descriptor back to shmFiles, the next hold of the
// same file takes it up again, and it is closed once its file is gone
// from the file system.
type shmFile struct {
	fd    int
	id    fileID
	inUse bool
}

type fileID struct{ dev, ino uint64 }

// shmFiles are the -shm files this process opened for holds, by file.
// extra keeps, open and unused, a descriptor opened for one file that a
// rename had turned into another already registered.
var shmFiles = struct {
	sync.Mutex
	byID  map[fileID]*shmFile
	extra []int
}{byID: map[fileID]*shmFile{}}

// openCheckpointHold returns a hold on the checkpoint lock of the database
// at dbPath, not yet taken. It returns nil when the -shm file cannot be
// opened, or another hold of this process has it: ferry then runs without
// one, as it always could. alone is Options.AloneInProcess.
func openCheckpointHold(dbPath string, alone bool) *checkpointHold {
	if checkpointHoldOff.Load() {
		return nil
	}
	path := dbPath + "-shm"
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil
	}
	id := fileID{dev: st.Dev, ino: st.Ino}
	shmFiles.Lock()
	defer shmFiles.Unlock()
	sweepShmFiles()
	sf := shmFiles.byID[id]
	if sf == nil {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		// Registered under the file it is, which a rename between the
		// stat and the open may have made another one: it stays open
		// either way.
		if err := unix.Fstat(fd, &st); err == nil {
			id = fileID{dev: st.Dev, ino: st.Ino}
		}
		if shmFiles.byID[id] != nil {
			shmFiles.extra = append(shmFiles.extra, fd)
			return nil
		}
		sf = &shmFile{fd: fd, id: id}
		shmFiles.byID[id] = sf
	}
	if sf.inUse {
		return nil
	}
	sf.inUse = true
	return &checkpointHold{shm: sf, alone: alone}
}

// checkpointHoldOff, set by tests, has ferry run without a hold, as where
// none could be had: the application's own checkpoints then run while it
// commits.
var checkpointHoldOff atomic.Bool

// sweepShmFiles closes the descriptors, not in use, of files no longer in
// the file system (SQLite removes the -shm file with the last connection
// that closes cleanly): no connection can have such a file open for its
// locks.
func sweepShmFiles() {
	for id, sf := range shmFiles.byID {
		var st unix.Stat_t
		if sf.inUse || unix.Fstat(sf.fd, &st) != nil || st.Nlink > 0 {
			continue
		}
		unix.Close(sf.fd) // nothing to do about a failure: the file is gone
		delete(shmFiles.byID, id)
	}
}

// set takes the lock when want and the wal-index header is settled, and
// lets it go otherwise. The lock busy (a checkpoint of another
// connection is running) leaves it not held, to be taken at a later call.
func (h *checkpointHold) set(want bool) error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.setLocked(want)
}

func (h *checkpointHold) setLocked(want bool) error {
	if want && !h.settled() {
		want = false
	}
	switch {
	case want && !h.held:
		err := h.lock(unix.F_WRLCK)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("take the checkpoint lock: %w", err)
		}
		h.held = true
	case !want && h.held:
		if err := h.lock(unix.F_UNLCK); err != nil {
			return fmt.Errorf("let go of the checkpoint lock: %w", err)
		}
		h.held = false
	}
	return nil
}

// release lets the lock go for the time f runs (ferry's own checkpoint,
// which needs it), and takes it again after, if it was held and still may
// be.
func (h *checkpointHold) release(f func() error) error {
	if h == nil {
		return f()
	}
	h.mu.Lock()
	was := h.held
	err := h.setLocked(false)
	h.mu.Unlock()
	if err != nil {
		return err
	}
	err = f()
	if was {
		err = errors.Join(err, h.set(true))
	}
	return err
}

// recheck lets the lock go if the wal-index header became unsettled:
// before ferry begins a read transaction, which would have to recover the
// index itself, and needs the lock for that.
func (h *checkpointHold) recheck() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held {
		return nil
	}
	return h.setLocked(true)
}

// isHeld reports whether the lock is held.
func (h *checkpointHold) isHeld() bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
}

// close lets the lock go and ends the hold; called once ferry's
// connections to the database are closed, it closes the file when ferry
// is alone in the process, and gives it back to shmFiles otherwise.
func (h *checkpointHold) close() error {
	if h == nil {
		return nil
	}
	if err := h.set(false); err != nil {
		return err
	}
	shmFiles.Lock()
	defer shmFiles.Unlock()
	h.shm.inUse = false
	if !h.alone {
		return nil
	}
	delete(shmFiles.byID, h.shm.id)
	if err := unix.Close(h.shm.fd); err != nil {
		return fmt.Errorf("close the -shm file: %w", err)
	}
	return nil
}

// settled reports whether the wal-index header is settled (see
// wal.IndexHeaderSettled).
func (h *checkpointHold) settled() bool {
	n, err := unix.Pread(h.shm.fd, h.buf[:], 0)
	return err == nil && n == len(h.buf) && wal.IndexHeaderSettled(h.buf[:])
}

func (h *checkpointHold) lock(typ int16) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: wal.CheckpointLockByte, Len: 1}
	for {
		err := unix.FcntlFlock(uintptr(h.shm.fd), unix.F_OFD_SETLK, &lk)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
