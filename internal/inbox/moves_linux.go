package inbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// moveWatch reports the paths renamed into the inbox or any directory of
// it, from inotify's IN_MOVED_TO, which fsnotify reports as it reports a
// file created in place: a file renamed in is complete at once. The scans
// add each directory they walk (watch); a directory that moves or goes
// away loses its watch, and the next scan watches it again where it now
// is, so that no event is put under a path the directory left.
type moveWatch struct {
	f     *os.File
	names chan string
	done  chan struct{}

	mu    sync.Mutex
	dirs  map[int32]string // watch descriptor -> directory
	wds   map[string]int32 // directory -> watch descriptor
	fd    int
	full  bool // the kernel refused a watch: no more tries until one goes
	close sync.Once
}

// moveEvents are the events a directory's watch asks for.
const moveEvents = unix.IN_MOVED_TO | unix.IN_MOVE_SELF | unix.IN_DELETE_SELF | unix.IN_ONLYDIR

// watchMoves starts watching dir for renames into it.
func watchMoves(dir string) (*moveWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	m := &moveWatch{
		// A non-blocking descriptor goes to the runtime's poller, so
		// that Close ends a Read waiting on it.
		f:     os.NewFile(uintptr(fd), "inotify"),
		names: make(chan string, 256),
		done:  make(chan struct{}),
		dirs:  map[int32]string{},
		wds:   map[string]int32{},
		fd:    fd,
	}
	if err := m.add(dir); err != nil {
		m.f.Close()
		return nil, err
	}
	go m.read()
	return m, nil
}

// Names returns the paths renamed in. The channel closes with the watch;
// an event that finds it full is dropped, to be found by a scan and its
// quiet period.
func (m *moveWatch) Names() <-chan string { return m.names }

// watch adds dir, a directory of the inbox a scan walked, if it is not
// watched yet. A watch the kernel refuses (its limit of watches reached)
// leaves renames into dir to the quiet period.
func (m *moveWatch) watch(dir string) {
	m.mu.Lock()
	_, ok := m.wds[dir]
	full := m.full
	m.mu.Unlock()
	if !ok && !full {
		// A directory gone since the scan saw it needs no watch; one the
		// kernel has no room for stops the tries until a watch goes.
		if err := m.add(dir); errors.Is(err, unix.ENOSPC) {
			m.mu.Lock()
			m.full = true
			m.mu.Unlock()
		}
	}
}

func (m *moveWatch) add(dir string) error {
	wd, err := unix.InotifyAddWatch(m.fd, dir, moveEvents)
	if err != nil {
		return os.NewSyscallError("inotify_add_watch", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.dirs[int32(wd)]; ok && old != dir {
		delete(m.wds, old) // the same directory under a path it moved to
	}
	m.dirs[int32(wd)], m.wds[dir] = dir, int32(wd)
	return nil
}

// forget drops the watch wd, whose directory went away, or, with moved,
// moved: then the watches of the directories below it go too, since
// their paths went with it, and the next scan watches them all again
// where they now are.
func (m *moveWatch) forget(wd int32, moved bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir, ok := m.dirs[wd]
	if !ok {
		return
	}
	m.full = false
	delete(m.dirs, wd)
	delete(m.wds, dir)
	if !moved {
		return
	}
	unix.InotifyRmWatch(m.fd, uint32(wd))
	below := dir + string(filepath.Separator)
	for d, w := range m.wds {
		if strings.HasPrefix(d, below) {
			delete(m.wds, d)
			delete(m.dirs, w)
			unix.InotifyRmWatch(m.fd, uint32(w))
		}
	}
}

func (m *moveWatch) read() {
	defer close(m.done)
	defer close(m.names)
	buf := make([]byte, 64<<10)
	for {
		n, err := m.f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := buf[off : off+unix.SizeofInotifyEvent]
			wd := int32(binary.NativeEndian.Uint32(ev[0:4]))
			mask := binary.NativeEndian.Uint32(ev[4:8])
			nameLen := int(binary.NativeEndian.Uint32(ev[12:16]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:min(n, off+unix.SizeofInotifyEvent+nameLen)], "\x00"))
			off += unix.SizeofInotifyEvent + nameLen
			switch {
			case mask&unix.IN_MOVED_TO != 0:
				m.mu.Lock()
				dir, ok := m.dirs[wd]
				m.mu.Unlock()
				if !ok {
					continue
				}
				select {
				case m.names <- filepath.Join(dir, name):
				default:
				}
			case mask&unix.IN_MOVE_SELF != 0:
				m.forget(wd, true)
			case mask&(unix.IN_DELETE_SELF|unix.IN_IGNORED) != 0:
				m.forget(wd, false)
			}
		}
	}
}

// Close stops the watch and waits for its reader to end.
func (m *moveWatch) Close() {
	m.close.Do(func() {
		m.f.Close()
		<-m.done
	})
}
