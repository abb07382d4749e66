package spool

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ferrydb/ferry/internal/durable"
)

// load prepares the layout and rebuilds the index from disk. It runs under
// the lock, before the Spool is shared, so nothing moves while it looks.
func (s *Spool) load() error {
	created := false
	for _, name := range []string{tmpName, queuesName} {
		p := filepath.Join(s.dir, name)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			created = true
		}
		if err := mkdir(p); err != nil {
			return err
		}
	}
	if created {
		if err := durable.SyncDir(s.dir); err != nil {
			return err
		}
	}
	if err := s.sweepTmp(); err != nil {
		return err
	}
	if err := s.loadSpares(); err != nil {
		return err
	}
	names, err := os.ReadDir(queuesDir(s.dir))
	if err != nil {
		return err
	}
	seen := map[ID]bool{}
	for _, de := range names {
		if !de.IsDir() || !validQueue(de.Name()) {
			continue // Check reports it; it is not ours to delete
		}
		if err := s.loadQueue(de.Name(), seen); err != nil {
			return err
		}
	}
	return nil
}

// sweepTmp deletes whatever a previous owner left in tmp/: entries it was
// building (their Enqueue never returned, so nobody was told they exist)
// and entries it was deleting.
func (s *Spool) sweepTmp() error {
	tmp := filepath.Join(s.dir, tmpName)
	names, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, de := range names {
		if err := os.RemoveAll(filepath.Join(tmp, de.Name())); err != nil {
			return err
		}
	}
	if len(names) > 0 {
		return durable.SyncDir(tmp)
	}
	return nil
}

// loadQueue reclaims the queue's checkouts and indexes its entries. seen
// holds the IDs indexed so far, so that an ID found twice is indexed once.
func (s *Spool) loadQueue(name string, seen map[ID]bool) error {
	qd, cd := queueDir(s.dir, name), checkoutDir(s.dir, name)
	if err := mkdir(cd); err != nil {
		return err
	}
	q := s.queue(name)
	q.hasDir = true

	// A checkout whose holder is gone (the process died, or closed the
	// spool before finishing it) goes back to its queue to be retried.
	outs, err := os.ReadDir(cd)
	if err != nil {
		return err
	}
	moved := false
	var stuck []string
	for _, de := range outs {
		if _, ok := parseID(de.Name()); !ok || !de.IsDir() {
			continue
		}
		dst := filepath.Join(qd, de.Name())
		if _, err := os.Lstat(dst); err == nil {
			// The same ID is ready and checked out: never produced
			// by this package, so something else copied it. Keep both
			// for an operator; Check reports the duplicate.
			stuck = append(stuck, filepath.Join(cd, de.Name()))
			continue
		}
		if err := os.Rename(filepath.Join(cd, de.Name()), dst); err != nil {
			return err
		}
		moved = true
	}
	if moved {
		if err := syncDirs(cd, qd); err != nil {
			return err
		}
	}
	for _, p := range stuck {
		b := max(dataSize(p), 0)
		q.bytes += b
		s.bytes += b
	}

	entries, err := os.ReadDir(qd)
	if err != nil {
		return err
	}
	now := s.now()
	for _, de := range entries {
		nanos, ok := parseID(de.Name())
		if !ok || !de.IsDir() {
			continue
		}
		s.lastNanos = max(s.lastNanos, nanos)
		id := ID(de.Name())
		p := filepath.Join(qd, de.Name())
		size, own := dataSizeOwn(p)
		q.bytes += max(size, 0)
		s.bytes += max(size, 0)
		if seen[id] {
			continue
		}
		m, err := readMeta(p)
		if err != nil || size < 0 || m.Size != size {
			// An entry we cannot read is never handed out and never
			// deleted here: Check reports it so that a person decides.
			continue
		}
		seen[id] = true
		q.put(&item{id: id, size: size, next: m.NextTry, own: own}, now)
	}
	return nil
}

// dataSize returns the size of entryDir/data, or -1 when there is none.
func dataSize(entryDir string) int64 {
	size, _ := dataSizeOwn(entryDir)
	return size
}

// dataSizeOwn is dataSize that also says whether the file has no other
// name than entryDir/data (see item.own). One that came by hard link
// keeps its other name if a crash came before EnqueueFile removed it.
func dataSizeOwn(entryDir string) (int64, bool) {
	fi, err := os.Lstat(filepath.Join(entryDir, dataName))
	if err != nil || !fi.Mode().IsRegular() {
		return -1, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return fi.Size(), ok && st.Nlink == 1
}
