package filestore

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// stripes is how many locks guard the key space. Keys hash onto stripes, so
// unrelated keys rarely wait for each other and the number of lock files
// stays fixed however many objects the store holds.
const stripes = 64

// keyLocks serialises every write and delete of a key, between goroutines
// (a mutex) and between processes on the same machine (flock). flock alone
// is not enough inside one process: locks belong to the open file
// description, which all goroutines here share.
type keyLocks struct {
	dir   string
	mu    [stripes]sync.Mutex
	files [stripes]*os.File
	open  sync.Mutex
}

func newKeyLocks(dir string) (*keyLocks, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &keyLocks{dir: dir}, nil
}

func (l *keyLocks) lock(key string) (unlock func(), err error) {
	h := fnv.New32a()
	h.Write([]byte(key))
	i := h.Sum32() % stripes
	l.mu[i].Lock()
	f, err := l.file(i)
	if err != nil {
		l.mu[i].Unlock()
		return nil, err
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		l.mu[i].Unlock()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() {
		// Closing the store's files would also release the lock, so an
		// unlock error leaves nothing held that outlives the process.
		_ = flock(f, unix.LOCK_UN)
		l.mu[i].Unlock()
	}, nil
}

func (l *keyLocks) file(i uint32) (*os.File, error) {
	l.open.Lock()
	defer l.open.Unlock()
	if l.files[i] == nil {
		f, err := os.OpenFile(filepath.Join(l.dir, fmt.Sprintf("%02d", i)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open lock file: %w", err)
		}
		l.files[i] = f
	}
	return l.files[i], nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
}

func (l *keyLocks) close() error {
	l.open.Lock()
	defer l.open.Unlock()
	var first error
	for i, f := range l.files {
		if f != nil {
			if err := f.Close(); err != nil && first == nil {
				first = err
			}
			l.files[i] = nil
		}
	}
	return first
}
