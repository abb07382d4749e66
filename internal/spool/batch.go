package spool

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/ferrydb/ferry/internal/durable"
)

// batchSyncers is how many fsyncs a Commit has in flight at once where it
// cannot sync the whole file system in one call (see durable.SyncFS). A
// journaling file system merges concurrent fsyncs into one commit and one
// flush of the disk's cache.
const batchSyncers = 32

// Batch stages many entries for one queue and makes them durable and
// visible together, for a caller with many files to spool at once (`ferry
// push` of a directory). Each entry is the same on disk as one from
// EnqueueFile; what a batch saves is flushes and waiting. On Linux one
// syncfs makes every entry of the batch durable (its data, its meta and
// its directory); elsewhere their fsyncs run side by side. Then one fsync
// of the queue's directory makes the renames of all of them into the
// queue durable.
//
// Nothing of a batch is visible before Commit, and nothing of it is
// acknowledged before Commit returns: a crash before then may leave any
// subset of its entries queued, each of them whole, and Open sweeps the
// rest from tmp/. A Batch is for one goroutine; finish it with Commit or
// Discard.
type Batch struct {
	s      *Spool
	queue  string
	staged []*staged
	// fs is tmp/, opened before the first entry of the batch is
	// written: a syncfs through it reports every write-back failure
	// since then.
	fs *os.File
}

// staged is an entry of a batch written to tmp/ and not yet fsynced.
type staged struct {
	id   ID
	dir  string
	size int64
	res  *reserveWriter
	meta *meta // as written, for the index to keep (see item.meta)
}

// NewBatch returns an empty batch of entries for queue.
func (s *Spool) NewBatch(queue string) (*Batch, error) {
	if err := checkQueue(queue); err != nil {
		return nil, err
	}
	return &Batch{s: s, queue: queue}, nil
}

// Len returns how many entries the batch holds.
func (b *Batch) Len() int { return len(b.staged) }

// AddFile stages a copy of the regular file src, with payload, as an
// entry of the batch, as EnqueueFile without move would spool it. Its
// bytes count against Options.MaxBytes from now on: a file that does not
// fit fails with ErrFull and leaves the batch as it was.
func (b *Batch) AddFile(payload any, src string) error {
	s, queue := b.s, b.queue
	raw, err := marshalPayload(payload)
	if err != nil {
		return err
	}
	fd, err := openFd(src, syscall.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("enqueue %s to queue %s in spool %s: %w", src, queue, s.dir, err)
	}
	in := fdFile{fd, src}
	defer in.close()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fmt.Errorf("enqueue %s to queue %s in spool %s: %w", src, queue, s.dir, &os.PathError{Op: "stat", Path: src, Err: err})
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fmt.Errorf("enqueue %s to queue %s in spool %s: not a regular file", src, queue, s.dir)
	}
	return b.add(raw, st.Size, "from "+src, func(w io.Writer) error { return copySized(w, in, st.Size) })
}

// AddBytes stages data, with payload, as an entry of the batch, as
// Enqueue would spool it, and like AddFile counts it against
// Options.MaxBytes from now on.
func (b *Batch) AddBytes(payload any, data []byte) error {
	raw, err := marshalPayload(payload)
	if err != nil {
		return err
	}
	return b.add(raw, int64(len(data)), "", func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// add stages an entry of about size bytes that fill writes, with the
// payload raw, without fsyncing it; from, when set, says in an error
// where the bytes came from.
func (b *Batch) add(raw json.RawMessage, size int64, from string, fill func(io.Writer) error) error {
	s, queue := b.s, b.queue
	if err := s.fits(size); err != nil {
		return err
	}
	if b.fs == nil {
		var err error
		if b.fs, err = os.Open(filepath.Join(s.dir, tmpName)); err != nil {
			return s.writeErr(queue, err)
		}
	}
	id, stage, reused, err := s.stage(true)
	if err != nil {
		return s.writeErr(queue, err)
	}
	res := &reserveWriter{s: s}
	f, err := s.createData(filepath.Join(stage, dataName), reused)
	if err == nil {
		res.w = f
		err = fill(res)
		if err == nil && reused {
			err = f.truncate(res.n)
		}
		if cerr := f.close(); err == nil {
			err = cerr
		}
	}
	var m []byte
	md := &meta{Created: s.now(), Size: res.n, Payload: raw}
	if err == nil && res.full == nil {
		m, err = md.encode()
	}
	if err == nil && res.full == nil {
		err = writeEntryFile(filepath.Join(stage, metaName), m, reused)
	}
	if res.full != nil || err != nil {
		res.release()
		removeEntryQuiet(stage)
		if res.full != nil {
			return res.full
		}
		if from != "" {
			err = fmt.Errorf("%s: %w", from, err)
		}
		return s.writeErr(queue, err)
	}
	b.staged = append(b.staged, &staged{id: id, dir: stage, size: res.n, res: res, meta: md})
	return nil
}

// Commit makes the batch's entries durable and then visible in the
// queue, in the order they were added, and returns their IDs in that
// order. It leaves the batch empty, to be filled again.
//
// If an entry cannot be made durable, Commit makes none of them visible
// and returns no IDs. If the entries are renamed into the queue and a
// rename or the final fsync fails, the IDs returned are those that reached
// the queue, where they stay and will be handed out, and the error says
// what failed: after a failed fsync they may not survive a power loss.
func (b *Batch) Commit() ([]ID, error) {
	s, queue := b.s, b.queue
	batch, fs := b.staged, b.fs
	b.staged, b.fs = nil, nil
	if len(batch) == 0 {
		return nil, nil
	}
	err := syncStaged(batch, fs, s.syncFS)
	fs.Close()
	if err != nil {
		discard(batch)
		return nil, s.writeErr(queue, err)
	}
	if err := s.begin(); err != nil {
		discard(batch)
		return nil, err
	}
	defer s.end()
	if err := s.ensureQueueDir(queue); err != nil {
		discard(batch)
		return nil, s.writeErr(queue, err)
	}
	ids := make([]ID, 0, len(batch))
	var renameErr error
	for i, st := range batch {
		if err := moveEntry(st.dir, readyPath(s.dir, queue, st.id)); err != nil {
			renameErr = err
			discard(batch[i:])
			break
		}
		ids = append(ids, st.id)
		s.mu.Lock()
		s.reserved -= st.res.reserved
		st.res.reserved = 0
		s.bytes += st.size
		q := s.queue(queue)
		q.bytes += st.size
		q.put(s.newItem(st.id, st.size, true, st.meta), s.now())
		s.mu.Unlock()
	}
	if len(ids) > 0 {
		s.mu.Lock()
		s.queue(queue).notify()
		s.mu.Unlock()
		if err := s.groupSync(queueDir(s.dir, queue)); err != nil {
			return ids, fmt.Errorf("enqueue %d entries to queue %s in spool %s: %w", len(ids), queue, s.dir, err)
		}
	}
	if renameErr != nil {
		return ids, s.writeErr(queue, fmt.Errorf("%d of %d entries queued: %w", len(ids), len(batch), renameErr))
	}
	return ids, nil
}

// Discard removes the batch's entries, none of which was committed, and
// leaves the batch empty.
func (b *Batch) Discard() {
	discard(b.staged)
	if b.fs != nil {
		b.fs.Close()
	}
	b.staged, b.fs = nil, nil
}

// syncStaged makes the staged entries durable: with one syncfs through
// fs where the kernel's syncfs reports write-back errors, and otherwise
// by fsyncing each entry's data, meta and directory, batchSyncers at a
// time. It returns the first error.
func syncStaged(batch []*staged, fs *os.File, syncFS func(*os.File) (bool, error)) error {
	if ok, err := syncFS(fs); ok {
		return err
	}
	work := make(chan *staged)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range min(batchSyncers, len(batch)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for st := range work {
				if err := syncOne(st); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, st := range batch {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		work <- st
	}
	close(work)
	wg.Wait()
	return first
}

func syncOne(st *staged) error {
	_, err := syncFile(filepath.Join(st.dir, dataName))
	if err == nil {
		_, err = syncFile(filepath.Join(st.dir, metaName))
	}
	if err == nil {
		err = durable.SyncDir(st.dir)
	}
	if err != nil {
		return fmt.Errorf("entry %s: %w", st.id, err)
	}
	return nil
}

// discard removes staged entries and returns their bytes to the bound.
func discard(batch []*staged) {
	for _, st := range batch {
		st.res.release()
		removeAllQuiet(st.dir)
	}
}
