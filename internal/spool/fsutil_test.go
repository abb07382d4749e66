package spool

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// countingReader counts the reads made of it.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// copySized copies the whole file whatever size it is told, so that a file
// that grew or shrank between its stat and its read is copied as it is.
func TestCopySizedCopiesTheWholeFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name      string
		size, was int64 // the file's length and the length copySized is told
		reads     int   // the most reads it may take; 0: not counted
	}{
		{"empty", 0, 0, 1},
		{"as stated", 4096, 4096, 1},
		{"grew by one", 4097, 4096, 0},
		{"grew past the buffer", 9000, 4096, 0},
		{"shrank", 100, 4096, 0},
		{"unknown size", 300 << 10, -1, 0},
		{"larger than the buffer", 600 << 10, 600 << 10, 0},
	} {
		data := make([]byte, c.size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		path := filepath.Join(dir, "src")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		in := &countingReader{r: f}
		err = copySized(&out, in, c.was)
		f.Close()
		if err != nil || !bytes.Equal(out.Bytes(), data) {
			t.Errorf("%s: copied %d of %d bytes, %v", c.name, out.Len(), len(data), err)
		}
		if c.reads > 0 && in.reads > c.reads {
			t.Errorf("%s: %d reads, want at most %d", c.name, in.reads, c.reads)
		}
	}
}
