package capture

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// batchData holds the bytes of a batch: in memory, in chunks, while the
// process's bound on batch memory grants them (see batchmem.go); past
// that, in the batch's file. A batch that could not get a chunk spills:
// what it held in memory is written to the file, and the rest of the
// batch follows it there, buffered spillChunk at a time, until the batch
// is emptied and may use memory again.
//
// Chunks rather than one buffer that doubles: a chunk is taken without
// copying what is held, so a batch grows at the same cost at any size
// (the capture may read into it while it holds SQLite's writer lock), and
// a batch that is emptied keeps its chunks for the next. The first chunk
// is small and each next one twice the last, up to batchChunk, so that a
// database that commits a few pages a second holds a few pages' worth,
// not a full chunk, in a fleet of thousands. They are mapped from the
// kernel, outside the Go heap: on the heap, tens of MiB that stay live
// would have the garbage collector let the heap grow by as much again
// before it collects, doubling what the batches cost in memory.
//
// The file part keeps whatever a failed write could not put on disk and
// tries again at the next flush, unlike bufio.Writer, whose first error
// sticks for good: a spool disk that was full and has room again must not
// leave the batch failing forever.
type batchData struct {
	f    *os.File
	mem  *memoryBudget
	most int64 // the most bytes held in memory
	size int64 // bytes of the batch

	// In memory: bytes [0, size) in chunks, in order; the first is first
	// bytes long, each next one twice the last, up to chunk (tests make
	// them small). More chunks than the batch fills may be kept for the
	// next. wchunk and wat are where byte size goes.
	chunks  [][]byte
	held    int64 // the chunks' bytes
	first   int64
	chunk   int64
	wchunk  int
	wat     int64
	spilled bool

	// Spilled: bytes [0, flushed) in the file, [flushed, size) in buf.
	buf     []byte
	limit   int   // buf is written out once it holds this much
	flushed int64 // bytes of the batch in the file
	end     int64 // the file's size
}

// The sizes of a batch's chunks of memory: the first, and the largest.
const (
	firstBatchChunk = 64 << 10
	batchChunk      = 1 << 20
)

// spillChunk is how much a batch that spilled buffers between writes.
const spillChunk = 256 << 10

func newBatchData(f *os.File, mem *memoryBudget, most int64) *batchData {
	return &batchData{f: f, mem: mem, most: most, first: firstBatchChunk, chunk: batchChunk, limit: spillChunk}
}

// write appends p to the batch. An error means that part of the batch
// could not be written to the file yet; it is held in buf and written at
// the next flush.
func (d *batchData) write(p []byte) error {
	var err error
	if !d.spilled {
		if d.hold(d.size + int64(len(p))) {
			d.copyIn(p)
			return nil
		}
		err = d.spill()
	}
	d.buf = append(d.buf, p...)
	d.size += int64(len(p))
	if err == nil && len(d.buf) >= d.limit {
		err = d.flush()
	}
	return err
}

// hold makes the chunks hold n bytes, taking more chunks from mem if it
// grants them, and reports whether they do.
func (d *batchData) hold(n int64) bool {
	if d.mem == nil || n > d.most {
		return false
	}
	for d.held < n {
		size := min(d.first<<min(len(d.chunks), 30), d.chunk)
		if !d.mem.reserve(size) {
			return false
		}
		c, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			d.mem.release(size)
			return false
		}
		d.chunks = append(d.chunks, c)
		d.held += size
	}
	return true
}

// copyIn copies p into the chunks, which hold room for it.
func (d *batchData) copyIn(p []byte) {
	for len(p) > 0 {
		if d.wat == int64(len(d.chunks[d.wchunk])) {
			d.wchunk, d.wat = d.wchunk+1, 0
		}
		n := copy(d.chunks[d.wchunk][d.wat:], p)
		p = p[n:]
		d.wat += int64(n)
		d.size += int64(n)
	}
}

// locate returns the chunk that holds byte off, and where in it; for an
// offset at a chunk's end, that chunk and its length.
func (d *batchData) locate(off int64) (int, int64) {
	for i, c := range d.chunks {
		if off <= int64(len(c)) {
			return i, off
		}
		off -= int64(len(c))
	}
	return 0, 0 // no chunk: off is 0
}

// inMemory returns the chunks' slices that hold the batch.
func (d *batchData) inMemory() [][]byte {
	var out [][]byte
	for i, left := 0, d.size; left > 0; i++ {
		c := d.chunks[i][:min(left, int64(len(d.chunks[i])))]
		out = append(out, c)
		left -= int64(len(c))
	}
	return out
}

// spill writes what the chunks hold to the file, which holds the rest of
// the batch from then on. What cannot be written is held in buf.
func (d *batchData) spill() error {
	d.spilled, d.flushed, d.buf = true, 0, d.buf[:0]
	var err error
	for _, c := range d.inMemory() {
		if err == nil {
			var n int
			n, err = d.f.WriteAt(c, d.flushed)
			d.flushed += int64(n)
			d.end = max(d.end, d.flushed)
			c = c[n:]
		}
		d.buf = append(d.buf, c...)
	}
	if err != nil {
		return fmt.Errorf("write capture batch: %w", err)
	}
	return nil
}

// flush writes what buf holds to the file; on failure what was not written
// stays held.
func (d *batchData) flush() error {
	n, err := d.f.WriteAt(d.buf, d.flushed)
	d.flushed += int64(n)
	d.end = max(d.end, d.flushed)
	d.buf = d.buf[:copy(d.buf, d.buf[n:])]
	if err != nil {
		return fmt.Errorf("write capture batch: %w", err)
	}
	return nil
}

// rollback forgets every byte after mark. A file is cut back only past
// cutAt bytes.
func (d *batchData) rollback(mark, cutAt int64) error {
	switch {
	case !d.spilled:
		d.size = mark
		d.wchunk, d.wat = d.locate(mark)
		return nil
	case mark >= d.flushed:
		// What goes is all still in memory: no write is needed, so a
		// disk without room cannot make a rollback fail.
		d.buf = d.buf[:mark-d.flushed]
		d.size = mark
		return nil
	}
	d.buf = d.buf[:0]
	// Bytes past the batch's size are never read, so the file is only
	// cut back when it grew well past a batch: a file kept at its size is
	// written over in place, without the kernel freeing and allocating
	// its pages again for every batch.
	if d.end > cutAt {
		if err := d.f.Truncate(mark); err != nil {
			return err
		}
		d.end = mark
	}
	d.flushed, d.size = mark, mark
	if mark == 0 {
		d.spilled, d.wchunk, d.wat = false, 0, 0
	}
	return nil
}

// emptied is told that the batch was emptied after holding used bytes: a
// batch that used a small part of its chunks gives them back, so that a
// database that wrote a large batch once and little since does not keep
// the memory from others.
func (d *batchData) emptied(used int64) {
	if len(d.chunks) > 1 && d.held > 4*used {
		d.free()
	}
}

// free gives the chunks back.
func (d *batchData) free() {
	for _, c := range d.chunks {
		// Nothing to do about a failure: the mapping stays, unused.
		_ = unix.Munmap(c)
	}
	if d.held > 0 {
		d.mem.release(d.held)
	}
	d.chunks, d.held, d.wchunk, d.wat = nil, 0, 0, 0
}

// reader reads the whole batch.
func (d *batchData) reader() io.Reader {
	var rs []io.Reader
	if !d.spilled {
		for _, c := range d.inMemory() {
			rs = append(rs, bytes.NewReader(c))
		}
	} else {
		rs = append(rs, io.NewSectionReader(d.f, 0, d.flushed), bytes.NewReader(d.buf))
	}
	return io.MultiReader(rs...)
}

// memRecords returns a function that reads the next n bytes of a batch
// held in memory: in place where they lie in one chunk, else copied into
// scratch, which must hold n bytes.
func (d *batchData) memRecords(scratch []byte) func(n int) ([]byte, error) {
	var off, at int64
	var i int
	return func(n int) ([]byte, error) {
		if off+int64(n) > d.size {
			return nil, io.ErrUnexpectedEOF
		}
		off += int64(n)
		if at == int64(len(d.chunks[i])) {
			i, at = i+1, 0
		}
		if c := d.chunks[i]; at+int64(n) <= int64(len(c)) {
			at += int64(n)
			return c[at-int64(n) : at], nil
		}
		p := scratch[:n]
		for k := 0; k < n; {
			if at == int64(len(d.chunks[i])) {
				i, at = i+1, 0
			}
			m := copy(p[k:], d.chunks[i][at:])
			k += m
			at += int64(m)
		}
		return p, nil
	}
}
