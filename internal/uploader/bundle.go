package uploader

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
)

// BundleFileMax is the largest file a Bundle takes; a larger one costs
// more to copy than to spool as an entry of its own.
const BundleFileMax = 64 << 10

// Bundle gathers small files into one spool entry (Job.Files): their
// bytes one after the other, with each one's key, size and SHA-256. A
// spool entry costs a directory, two files and three renames whatever
// it holds; a bundle shares them among up to hundreds of files.
type Bundle struct {
	data  []byte
	files []BundledFile
}

// ErrTooLarge says a file is past BundleFileMax, or would take the bundle
// past MaxBundleBytes: it goes alone, or in the next bundle.
var ErrTooLarge = errors.New("too large for the bundle")

// Add appends the regular file at path, to go to key, and returns its
// size. It leaves the bundle as it was on an error, and with ErrTooLarge
// for a file the bundle cannot take.
func (b *Bundle) Add(path, key string) (int64, error) {
	if err := CheckKey(key); err != nil {
		return 0, err
	}
	most := min(BundleFileMax, MaxBundleBytes-len(b.data))
	data, err := appendFile(b.data, path, most)
	if err != nil {
		return 0, err
	}
	sum := sha256.Sum256(data[len(b.data):])
	size := int64(len(data) - len(b.data))
	b.files = append(b.files, BundledFile{Key: key, Size: size, SHA256: hex.EncodeToString(sum[:])})
	b.data = data
	return size, nil
}

// Len returns how many files the bundle holds.
func (b *Bundle) Len() int { return len(b.files) }

// Size returns how many bytes the bundle holds.
func (b *Bundle) Size() int { return len(b.data) }

// Job returns the bundle's payload for the spool, to go to targets, and
// its data, and empties the bundle: both are the caller's.
func (b *Bundle) Job(targets []string, sealed bool) (Job, []byte) {
	job, data := Job{Pending: targets, Sealed: sealed, Files: b.files}, b.data
	b.data, b.files = nil, nil
	return job, data
}

// appendFile appends the bytes of the regular file at path to buf, or
// returns ErrTooLarge if it holds more than most. It opens the file
// without registering it with the runtime's poller (os.Open's extra
// system calls, which fail for a regular file, cost a small file more
// than its read).
func appendFile(buf []byte, path string, most int) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	for err == syscall.EINTR {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return buf, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return buf, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return buf, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size > int64(most) {
		return buf, ErrTooLarge
	}
	start := len(buf)
	// Room for one byte more than the size found: a read that fills
	// less has reached the end, without the read that only finds it.
	buf = slices.Grow(buf, int(st.Size)+1)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4<<10)
		}
		m, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return buf[:start], &os.PathError{Op: "read", Path: path, Err: err}
		}
		buf = buf[:len(buf)+m]
		if len(buf)-start > most {
			// It grew past the limit since its size was read.
			return buf[:start], ErrTooLarge
		}
		if m == 0 || (len(buf)-start == int(st.Size) && len(buf) < cap(buf)) {
			return buf, nil
		}
	}
}

// Sum returns the hex SHA-256 of the last file added, or "".
func (b *Bundle) Sum() string {
	if len(b.files) == 0 {
		return ""
	}
	return b.files[len(b.files)-1].SHA256
}
