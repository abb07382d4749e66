package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/durable"
)

// Options configure a Spool. The zero value is usable: unbounded, real
// clock, default backoff, no ordered queues.
type Options struct {
	// MaxBytes bounds the entry data the spool holds; an Enqueue that
	// would pass it fails with ErrFull. Zero means no bound.
	MaxBytes int64
	// Now is the clock for backoff and IDs; nil means time.Now.
	Now func() time.Time
	// Backoff spaces the retries of an entry whose Fail was called.
	Backoff Backoff
	// Ordered names queues that hand out strictly one entry at a time, the
	// oldest, and none while it is in backoff: change sets must reach the
	// store in txid order.
	Ordered []string
}

// Spool is an open spool directory, owned by this process until Close.
// Its methods are safe for concurrent use.
type Spool struct {
	dir  string
	opts Options
	lock *os.File

	// ops is held shared by every operation that renames entries under
	// q/, and exclusively by DropQueue (which renames a whole queue away)
	// and Close, so that neither can pull a directory out from under a
	// rename in flight.
	ops sync.RWMutex

	mu        sync.Mutex
	closed    bool
	closing   chan struct{}
	queues    map[string]*queue
	bytes     int64 // entry data in q/
	reserved  int64 // data being written to tmp/ by Enqueue
	lastNanos int64 // of the greatest ID seen
	// dirs share the fsyncs of the directories that every entry passes
	// through (a queue's and its checkout/), so that concurrent workers
	// and enqueuers pay for about one fsync per round rather than one
	// each.
	dirs map[string]*durable.Dir
	// spares are directories of finished entries kept for new ones to
	// be built in (see spare.go); sparing counts those being renamed
	// there by a Done; spareMade that DIR/spare/ exists; spareUses
	// how many entries were built in one.
	spares    []string
	sparing   int
	spareMade bool
	spareUses int64
	// keptMetas counts the items that hold their meta (item.meta).
	keptMetas int

	// Seams for tests, set before use: the jitter draw of a backoff (in
	// [1, n]), the opening of an entry's data file (openEntryFile), and
	// the sync of a whole file system (durable.SyncFS) by a batch.
	jitter     func(n int64) int64
	createData func(path string, reuse bool) (fdFile, error)
	syncFS     func(f *os.File) (bool, error)
}

// Open opens the spool in dir, creating it if needed, and takes its lock:
// while this Spool is open, a second Open of dir, from this process or
// another, fails with an *InUseError. Open sweeps tmp/ (entries a dead
// process was building or deleting), hands entries that a dead process had
// checked out back to their queues, and indexes every entry.
func Open(dir string, opts Options) (*Spool, error) {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Backoff = opts.Backoff.withDefaults()
	s := &Spool{
		dir:        dir,
		opts:       opts,
		lock:       lock,
		closing:    make(chan struct{}),
		queues:     map[string]*queue{},
		dirs:       map[string]*durable.Dir{},
		jitter:     func(n int64) int64 { return rand.Int64N(n) + 1 },
		createData: openEntryFile,
		syncFS:     durable.SyncFS,
	}
	if err := s.load(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	if _, err := s.Adopt(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	return s, nil
}

// Close releases the lock. Entries still checked out stay in checkout/ and
// are handed out again by the next Open; their Entry methods return
// ErrClosed.
func (s *Spool) Close() error {
	s.ops.Lock()
	defer s.ops.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("close spool %s: %w", s.dir, err)
	}
	return nil
}

// Dir returns the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// MaxBytes returns the bound on entry data, zero for none.
func (s *Spool) MaxBytes() int64 { return s.opts.MaxBytes }

// Bytes returns the entry data held, in all queues.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Len returns the number of entries in queue, checked out ones included.
func (s *Spool) Len(queue string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.queues[queue]; q != nil {
		return q.len()
	}
	return 0
}

// Queues returns the names of the queues the spool knows, sorted.
func (s *Spool) Queues() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.queues))
	for n := range s.queues {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (s *Spool) now() time.Time { return s.opts.Now() }

// groupSync makes the renames into and out of each distinct directory of
// paths durable, sharing the fsyncs with every other goroutine doing the
// same (see durable.Dir).
func (s *Spool) groupSync(paths ...string) error {
	for i, p := range paths {
		if slices.Contains(paths[:i], p) {
			continue
		}
		s.mu.Lock()
		d := s.dirs[p]
		if d == nil {
			d = durable.NewDir(p)
			s.dirs[p] = d
		}
		s.mu.Unlock()
		if err := d.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// maxKeptMetas bounds the metas the index keeps (item.meta): a few
// hundred bytes each, for the entries most recently spooled.
const maxKeptMetas = 4096

// newItem returns the index's item for an entry this process just made
// visible, keeping m while fewer than maxKeptMetas are kept. The caller
// holds s.mu.
func (s *Spool) newItem(id ID, size int64, own bool, m *meta) *item {
	it := &item{id: id, size: size, own: own}
	if s.keptMetas < maxKeptMetas {
		it.meta = m
		s.keptMetas++
	}
	return it
}

// queue returns the index of name, creating it. The caller holds s.mu.
func (s *Spool) queue(name string) *queue {
	q := s.queues[name]
	if q == nil {
		q = newQueue(name, slices.Contains(s.opts.Ordered, name))
		s.queues[name] = q
	}
	return q
}

// ensureQueueDir creates q/<name>/checkout/ durably if it is missing. The
// caller holds s.ops shared.
func (s *Spool) ensureQueueDir(name string) error {
	s.mu.Lock()
	ok := s.queue(name).hasDir
	s.mu.Unlock()
	if ok {
		return nil
	}
	qd := queueDir(s.dir, name)
	if err := mkdir(qd); err != nil {
		return err
	}
	if err := mkdir(checkoutDir(s.dir, name)); err != nil {
		return err
	}
	if err := syncDirs(qd, queuesDir(s.dir)); err != nil {
		return err
	}
	s.mu.Lock()
	s.queue(name).hasDir = true
	s.mu.Unlock()
	return nil
}

// begin takes s.ops shared for an operation that renames under q/.
func (s *Spool) begin() error {
	s.ops.RLock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.ops.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Spool) end() { s.ops.RUnlock() }

// DropQueue deletes every entry of queue, checked out ones included (their
// holders get ErrDropped, or nil from Done), and returns how many entries
// and bytes it dropped. The capture side uses it to give up a change-set
// backlog that outgrew the spool; the queue is gone in one rename, so a
// crash leaves it whole or gone.
func (s *Spool) DropQueue(queue string) (dropped int, bytes int64, err error) {
	if err := checkQueue(queue); err != nil {
		return 0, 0, err
	}
	s.ops.Lock()
	defer s.ops.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, 0, ErrClosed
	}
	s.mu.Unlock()
	qd := queueDir(s.dir, queue)
	gone := filepath.Join(s.dir, tmpName, fmt.Sprintf("drop-%s-%d", queue, time.Now().UnixNano()))
	if err := os.Rename(qd, gone); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, 0, nil
		}
		return 0, 0, fmt.Errorf("drop queue %s in spool %s: %w", queue, s.dir, err)
	}
	s.mu.Lock()
	if q := s.queues[queue]; q != nil {
		dropped, bytes = q.len(), q.bytes
		s.bytes -= q.bytes
		for _, it := range q.ready {
			if it.meta != nil {
				s.keptMetas--
			}
		}
		for _, it := range q.waiting {
			if it.meta != nil {
				s.keptMetas--
			}
		}
		q.clear()
		q.notify()
	}
	s.mu.Unlock()
	err = durable.SyncDir(queuesDir(s.dir))
	removeAllQuiet(gone)
	if err != nil {
		return dropped, bytes, fmt.Errorf("drop queue %s in spool %s: %w", queue, s.dir, err)
	}
	return dropped, bytes, nil
}
