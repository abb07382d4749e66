package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ferrydb/ferry/internal/durable"
)

// Enqueue adds an entry to queue holding the bytes that write produces and
// payload, JSON-encoded, for the caller to read back from the Entry. When
// Enqueue returns nil the entry is durable: its data and meta were fsynced
// in tmp/ and then renamed into the queue, and the rename was fsynced.
// When it returns an error, nothing is visible and tmp/ holds nothing of it.
//
// The bytes count against Options.MaxBytes as they are written, so an entry
// that cannot fit fails with ErrFull as soon as it crosses the bound, rather
// than after filling the disk. A full file system fails with an error that
// says so and wraps syscall.ENOSPC.
func (s *Spool) Enqueue(queue string, payload any, write func(w io.Writer) error) (ID, error) {
	if err := checkQueue(queue); err != nil {
		return "", err
	}
	raw, err := marshalPayload(payload)
	if err != nil {
		return "", err
	}
	id, stage, reused, err := s.stage(true)
	if err != nil {
		return "", s.writeErr(queue, err)
	}
	res := &reserveWriter{s: s}
	defer res.release()
	committed := false
	defer func() {
		if !committed {
			removeEntryQuiet(stage)
		}
	}()

	f, err := s.createData(filepath.Join(stage, dataName), reused)
	if err != nil {
		return "", s.writeErr(queue, err)
	}
	res.w = f
	err = write(res)
	if err == nil && reused {
		err = f.truncate(res.n)
	}
	if err == nil {
		err = f.sync()
	}
	if cerr := f.close(); err == nil {
		err = cerr
	}
	if res.full != nil {
		// The caller's write may have wrapped, replaced or swallowed
		// our error; the bound is what stopped it.
		return "", res.full
	}
	if err != nil {
		return "", s.writeErr(queue, err)
	}
	m := &meta{Created: s.now(), Size: res.n, Payload: raw}
	committed, err = s.commit(queue, id, stage, true, reused, m, res)
	if err != nil {
		return "", err
	}
	return id, nil
}

// EnqueueFile adds the regular file src to queue as a new entry, like
// Enqueue. With move, src is removed once the entry is durable: the
// inbox hands files over this way.
//
// A move hard-links src into tmp/ when both are on one file system, and
// copies it otherwise. It never renames src away before the entry is
// visible in its queue: a crash in between would leave the file neither in
// the inbox nor in a queue, and Open's sweep of tmp/ would delete it. Crashing
// after the entry is visible and before src is removed spools the file twice,
// which at-least-once allows.
func (s *Spool) EnqueueFile(queue string, payload any, src string, move bool) (ID, error) {
	if err := checkQueue(queue); err != nil {
		return "", err
	}
	raw, err := marshalPayload(payload)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("enqueue %s to queue %s in spool %s: %w", src, queue, s.dir, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("enqueue %s to queue %s in spool %s: not a regular file", src, queue, s.dir)
	}
	if err := s.fits(fi.Size()); err != nil {
		return "", err
	}
	id, stage, _, err := s.stage(false)
	if err != nil {
		return "", s.writeErr(queue, err)
	}
	res := &reserveWriter{s: s}
	defer res.release()
	committed := false
	defer func() {
		if !committed {
			removeAllQuiet(stage)
		}
	}()

	// Only a regular file is linked: link(2) would link a symlink itself,
	// not what it points to, so a symlink's target is copied instead.
	data := filepath.Join(stage, dataName)
	lfi, err := os.Lstat(src)
	linked := move && err == nil && lfi.Mode().IsRegular() && os.Link(src, data) == nil
	if linked {
		// The producer may never have fsynced the file, and it may be
		// readable by others; both become ours to fix now.
		err = os.Chmod(data, filePerm)
		var size int64
		if err == nil {
			size, err = syncFile(data)
		}
		if err == nil {
			err = res.take(size)
		}
	} else {
		var f fdFile
		f, err = s.createData(data, false)
		if err == nil {
			res.w = f
			err = copyFileSync(f.sync, src, res)
			if cerr := f.close(); err == nil {
				err = cerr
			}
		}
	}
	if res.full != nil {
		return "", res.full
	}
	if err != nil {
		return "", s.writeErr(queue, fmt.Errorf("from %s: %w", src, err))
	}
	m := &meta{Created: s.now(), Size: res.n, Payload: raw}
	committed, err = s.commit(queue, id, stage, !linked, false, m, res)
	if err != nil {
		return "", err
	}
	if move {
		if err := os.Remove(src); err != nil && !errors.Is(err, os.ErrNotExist) {
			return id, fmt.Errorf("spooled %s as %s but could not remove it: %w", src, id, err)
		}
		if err := durable.SyncDir(parent(src)); err != nil {
			return id, fmt.Errorf("spooled %s as %s: %w", src, id, err)
		}
	}
	return id, nil
}

// stage reserves an ID and the directory to build its entry in: with
// reuse, a spare when there is one (reused then says so), and otherwise a
// new directory in tmp/.
func (s *Spool) stage(reuse bool) (id ID, dir string, reused bool, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", "", false, ErrClosed
	}
	id = s.newID()
	s.mu.Unlock()
	if reuse {
		if d := s.takeSpare(); d != "" {
			return id, d, true, nil
		}
	}
	p := filepath.Join(s.dir, tmpName, string(id))
	if err := os.Mkdir(p, dirPerm); err != nil {
		return "", "", false, err
	}
	return id, p, false, nil
}

// commit writes the meta into the staged entry and renames it into its
// queue. It reports whether the entry became visible: after that, the
// staging directory no longer exists and the entry is indexed, even if the
// final fsync fails. own says the data was written, not linked (see
// item.own); reused that stage is a spare.
func (s *Spool) commit(queue string, id ID, stage string, own, reused bool, m *meta, res *reserveWriter) (bool, error) {
	b, err := m.encode()
	if err == nil {
		err = writeEntryFileSync(filepath.Join(stage, metaName), b, reused)
	}
	if err == nil {
		err = durable.SyncDir(stage)
	}
	if err != nil {
		return false, s.writeErr(queue, err)
	}
	if err := s.begin(); err != nil {
		return false, err
	}
	defer s.end()
	if err := s.ensureQueueDir(queue); err != nil {
		return false, s.writeErr(queue, err)
	}
	if err := moveEntry(stage, readyPath(s.dir, queue, id)); err != nil {
		return false, s.writeErr(queue, err)
	}
	s.mu.Lock()
	s.reserved -= res.reserved
	res.reserved = 0
	s.bytes += m.Size
	q := s.queue(queue)
	q.bytes += m.Size
	q.put(s.newItem(id, m.Size, own, m), s.now())
	q.notify()
	s.mu.Unlock()
	// tmp/ is never fsynced: whatever a crash leaves there, Open sweeps,
	// so only the queue side of a rename out of it must be durable.
	if err := s.groupSync(queueDir(s.dir, queue)); err != nil {
		return true, fmt.Errorf("enqueue %s to queue %s in spool %s: %w", id, queue, s.dir, err)
	}
	return true, nil
}

func (s *Spool) writeErr(queue string, err error) error {
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrFull) {
		return err
	}
	if isNoSpace(err) {
		return fmt.Errorf("spool %s: file system full while writing an entry for queue %s; nothing was spooled (free space there or lower max-spool-bytes): %w", s.dir, queue, err)
	}
	return fmt.Errorf("enqueue to queue %s in spool %s: %w", queue, s.dir, err)
}

// reserve claims n more bytes of the bound for an entry that needs need
// bytes so far (n included).
func (s *Spool) reserve(n, need int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.MaxBytes > 0 && s.bytes+s.reserved+n > s.opts.MaxBytes {
		return &FullError{Dir: s.dir, Used: s.bytes + s.reserved, Max: s.opts.MaxBytes, Need: need}
	}
	s.reserved += n
	return nil
}

// fits checks, without reserving, that need bytes would fit now: a file
// too big is refused before a byte of it is copied.
func (s *Spool) fits(need int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.MaxBytes > 0 && s.bytes+s.reserved+need > s.opts.MaxBytes {
		return &FullError{Dir: s.dir, Used: s.bytes + s.reserved, Max: s.opts.MaxBytes, Need: need}
	}
	return nil
}

// reserveWriter counts an entry's bytes against the bound as they arrive.
type reserveWriter struct {
	s        *Spool
	w        io.Writer
	n        int64 // bytes written
	reserved int64 // bytes held in s.reserved for this entry
	full     *FullError
}

func (r *reserveWriter) Write(p []byte) (int, error) {
	if r.full != nil {
		return 0, r.full
	}
	if err := r.take(int64(len(p))); err != nil {
		return 0, err
	}
	n, err := r.w.Write(p)
	r.n += int64(n)
	return n, err
}

// take reserves n more bytes for the entry.
func (r *reserveWriter) take(n int64) error {
	if err := r.s.reserve(n, r.reserved+n); err != nil {
		r.full = err.(*FullError)
		return err
	}
	r.reserved += n
	if r.w == nil {
		r.n += n // linked, not written
	}
	return nil
}

// release returns what commit did not turn into spooled bytes.
func (r *reserveWriter) release() {
	r.s.mu.Lock()
	r.s.reserved -= r.reserved
	r.reserved = 0
	r.s.mu.Unlock()
}
