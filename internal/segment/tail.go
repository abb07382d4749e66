package segment

import (
	"hash/crc32"
	"io"
)

// tailReader passes a stream through while always holding back its last
// trailerSize bytes, so that the zstd decoder reading from it sees exactly
// the compressed body and the trailer is left for the Reader to check.
// Without it the decoder would read the trailer as the start of another
// frame, and a reader would need the object's length before starting.
type tailReader struct {
	src        io.Reader
	buf        []byte
	start, end int
	eof        bool
	err        error  // the source's error, other than EOF
	n          int64  // bytes passed through
	crc        uint32 // CRC32C of the bytes passed through
}

func newTailReader(src io.Reader) *tailReader {
	return &tailReader{src: src, buf: make([]byte, trailerSize+32<<10)}
}

func (t *tailReader) Read(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	for empty := 0; !t.eof && t.end-t.start <= trailerSize; {
		if t.start > 0 {
			t.end = copy(t.buf, t.buf[t.start:t.end])
			t.start = 0
		}
		n, err := t.src.Read(t.buf[t.end:])
		t.end += n
		switch {
		case err == io.EOF:
			t.eof = true
		case err != nil:
			t.err = err
			return 0, err
		case n == 0:
			if empty++; empty > 100 {
				t.err = io.ErrNoProgress
				return 0, t.err
			}
		}
	}
	avail := t.end - t.start - trailerSize
	if avail <= 0 {
		return 0, io.EOF
	}
	n := copy(p, t.buf[t.start:t.start+avail])
	t.crc = crc32.Update(t.crc, castagnoli, p[:n])
	t.start += n
	t.n += int64(n)
	return n, nil
}

// rest returns what is left once Read has returned EOF: the trailer, or
// fewer bytes than one if the stream was cut short.
func (t *tailReader) rest() []byte { return t.buf[t.start:t.end] }
