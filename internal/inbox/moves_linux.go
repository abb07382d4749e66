package inbox

import (
	"bytes"
	"encoding/binary"
	"os"

	"golang.org/x/sys/unix"
)

// watchMoves reports the names renamed into dir, from inotify's
// IN_MOVED_TO, which fsnotify reports as it reports a file created in
// place: a file renamed in is complete at once. The channel closes when
// stop is called; events that find it full are dropped, to be found by
// a scan and its quiet period.
func watchMoves(dir string) (names <-chan string, stop func(), err error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, nil, os.NewSyscallError("inotify_init1", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_ONLYDIR); err != nil {
		unix.Close(fd)
		return nil, nil, os.NewSyscallError("inotify_add_watch", err)
	}
	// A non-blocking descriptor goes to the runtime's poller, so that
	// Close ends a Read waiting on it.
	f := os.NewFile(uintptr(fd), "inotify")
	ch := make(chan string, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := buf[off : off+unix.SizeofInotifyEvent]
				mask := binary.NativeEndian.Uint32(ev[4:8])
				nameLen := int(binary.NativeEndian.Uint32(ev[12:16]))
				name := buf[off+unix.SizeofInotifyEvent : min(n, off+unix.SizeofInotifyEvent+nameLen)]
				off += unix.SizeofInotifyEvent + nameLen
				if mask&unix.IN_MOVED_TO == 0 {
					continue
				}
				select {
				case ch <- string(bytes.TrimRight(name, "\x00")):
				default:
				}
			}
		}
	}()
	return ch, func() { f.Close(); <-done }, nil
}
