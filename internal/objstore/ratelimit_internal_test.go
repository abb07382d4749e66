package objstore

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"

	"golang.org/x/time/rate"
)

func TestSpansAdd(t *testing.T) {
	var s spans
	for _, step := range []struct {
		lo, hi, fresh int64
		want          spans
	}{
		{10, 20, 10, spans{{10, 20}}},
		{10, 20, 0, spans{{10, 20}}},
		{30, 40, 10, spans{{10, 20}, {30, 40}}},
		{0, 5, 5, spans{{0, 5}, {10, 20}, {30, 40}}},
		{5, 10, 5, spans{{0, 20}, {30, 40}}}, // touches both neighbours
		{15, 35, 10, spans{{0, 40}}},
		{50, 50, 0, spans{{0, 40}}},
		{38, 45, 5, spans{{0, 45}}},
	} {
		if fresh := s.add(step.lo, step.hi); fresh != step.fresh {
			t.Errorf("add(%d, %d) = %d new bytes, want %d", step.lo, step.hi, fresh, step.fresh)
		}
		if !equalSpans(s, step.want) {
			t.Fatalf("after add(%d, %d): %v, want %v", step.lo, step.hi, s, step.want)
		}
	}
}

func equalSpans(a, b spans) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// charged returns a body over data at offset start, as limitStore.Put
// hands it to a backend, and a function reporting how many bytes it has
// charged: the bucket refills too slowly to matter and holds more than
// any test reads, so no read waits and what left it is what was charged.
func charged(data []byte, start int64) (*limitedSeeker, func() int64) {
	const tokens = 1 << 30
	b := &budget{lim: rate.NewLimiter(1e-9, tokens), kind: LimitBytes}
	r := bytes.NewReader(data)
	r.Seek(start, io.SeekStart)
	ls := &limitedSeeker{ctx: context.Background(), r: r, b: b, pos: start}
	ls.paid.add(0, start)
	return ls, func() int64 { return tokens - int64(b.lim.Tokens()+0.5) }
}

func TestLimitedSeekerChargesEachByteOnce(t *testing.T) {
	data := make([]byte, 1000)
	read := func(ls *limitedSeeker, off, n int64) {
		t.Helper()
		if _, err := ls.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(ls, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("read twice", func(t *testing.T) {
		ls, paid := charged(data, 0)
		read(ls, 0, 1000)
		read(ls, 0, 1000)
		if got := paid(); got != 1000 {
			t.Errorf("a body read twice charged %d bytes, want 1000", got)
		}
	})
	t.Run("parts out of order", func(t *testing.T) {
		ls, paid := charged(data, 0)
		read(ls, 500, 500)
		read(ls, 0, 500)
		if got := paid(); got != 1000 {
			t.Errorf("a body read second half first charged %d bytes, want 1000", got)
		}
	})
	t.Run("from an offset", func(t *testing.T) {
		ls, paid := charged(data, 300)
		read(ls, 300, 700)
		read(ls, 300, 700)
		if got := paid(); got != 700 {
			t.Errorf("a body from offset 300 charged %d bytes, want 700", got)
		}
	})
	t.Run("size by seeking to the end", func(t *testing.T) {
		ls, paid := charged(data, 0)
		if _, err := ls.Seek(0, io.SeekEnd); err != nil {
			t.Fatal(err)
		}
		read(ls, 0, 1000)
		if got := paid(); got != 1000 {
			t.Errorf("charged %d bytes, want 1000", got)
		}
	})
}

// Whatever order a backend reads and rewinds in, the bytes charged are
// the bytes of the body it has read at least once.
func TestLimitedSeekerChargesWhatWasRead(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		size := rng.Int64N(5000) + 1
		start := rng.Int64N(size)
		ls, paid := charged(make([]byte, size), start)
		seen := make([]bool, size)
		for i := int64(0); i < start; i++ {
			seen[i] = true
		}
		for range rng.IntN(20) + 1 {
			off := rng.Int64N(size)
			if _, err := ls.Seek(off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			n, _ := ls.Read(make([]byte, rng.Int64N(size)+1))
			for i := off; i < off+int64(n); i++ {
				seen[i] = true
			}
		}
		var want int64
		for i := start; i < size; i++ {
			if seen[i] {
				want++
			}
		}
		if got := paid(); got != want {
			t.Fatalf("body of %d bytes from offset %d: charged %d bytes, read %d distinct ones", size, start, got, want)
		}
	}
}
