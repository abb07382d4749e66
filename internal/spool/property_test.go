package spool

import (
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// The property test drives a Spool with random operations, reopening it
// now and then, and compares every answer with a model that is a plain map.

type modelEntry struct {
	id       ID
	queue    string
	data     string
	payload  int
	attempts int
	next     time.Time
	out      bool
}

type model struct {
	t       *testing.T
	dir     string
	clk     *clock
	opts    Options
	s       *Spool
	entries map[ID]*modelEntry
	held    []*Entry
}

var propQueues = []string{"a", "o", FailedQueue}

func (m *model) open(t *rapid.T) {
	s, err := Open(m.dir, m.opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.jitter = func(n int64) int64 { return n } // the longest wait: predictable
	m.s = s
}

func (m *model) bytes() int64 {
	var n int64
	for _, e := range m.entries {
		n += int64(len(e.data))
	}
	return n
}

// expect returns the entry Claim(q) must return, or nil and the Next an
// EmptyError must carry.
func (m *model) expect(q string) (*modelEntry, time.Time) {
	now := m.clk.Now()
	var in []*modelEntry
	for _, e := range m.entries {
		if e.queue == q {
			in = append(in, e)
		}
	}
	slices.SortFunc(in, func(a, b *modelEntry) int { return compareIDs(a.id, b.id) })
	if slices.Contains(m.opts.Ordered, q) {
		for _, e := range in {
			if e.out {
				return nil, time.Time{}
			}
		}
		if len(in) == 0 {
			return nil, time.Time{}
		}
		if in[0].next.After(now) {
			return nil, in[0].next
		}
		return in[0], time.Time{}
	}
	var next time.Time
	for _, e := range in {
		if e.out {
			continue
		}
		if !e.next.After(now) {
			return e, time.Time{}
		}
		if next.IsZero() || e.next.Before(next) {
			next = e.next
		}
	}
	return nil, next
}

func idOf(e *Entry) ID {
	if e == nil {
		return "nil"
	}
	return e.ID()
}

func compareIDs(a, b ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// pick draws one held entry and removes it from the held list.
func (m *model) pick(t *rapid.T) (*Entry, *modelEntry) {
	if len(m.held) == 0 {
		t.Skip("nothing checked out")
	}
	i := rapid.IntRange(0, len(m.held)-1).Draw(t, "held")
	e := m.held[i]
	m.held = slices.Delete(m.held, i, i+1)
	return e, m.entries[e.ID()]
}

func (m *model) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"": func(t *rapid.T) {
			if got, want := m.s.Bytes(), m.bytes(); got != want {
				t.Fatalf("Bytes = %d, model %d", got, want)
			}
			for _, q := range propQueues {
				n := 0
				for _, e := range m.entries {
					if e.queue == q {
						n++
					}
				}
				if got := m.s.Len(q); got != n {
					t.Fatalf("Len(%s) = %d, model %d", q, got, n)
				}
			}
		},
		"enqueue": func(t *rapid.T) {
			q := rapid.SampledFrom(propQueues[:2]).Draw(t, "queue")
			data := rapid.StringN(0, 24, -1).Draw(t, "data")
			p := rapid.Int().Draw(t, "payload")
			id, err := m.s.Enqueue(q, p, writeBytes([]byte(data)))
			if m.bytes()+int64(len(data)) > m.opts.MaxBytes {
				if !errors.Is(err, ErrFull) {
					t.Fatalf("Enqueue past the bound = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			m.entries[id] = &modelEntry{id: id, queue: q, data: data, payload: p}
		},
		"claim": func(t *rapid.T) {
			q := rapid.SampledFrom(propQueues).Draw(t, "queue")
			want, next := m.expect(q)
			e, err := m.s.Claim(q)
			if want == nil {
				var empty *EmptyError
				if !errors.As(err, &empty) || !empty.Next.Equal(next) {
					t.Fatalf("Claim(%s) = %s, %v; model: empty until %v", q, idOf(e), err, next)
				}
				return
			}
			if err != nil || e.ID() != want.id {
				t.Fatalf("Claim(%s) = %s, %v; model: %s", q, idOf(e), err, want.id)
			}
			var p int
			b, _ := os.ReadFile(e.Path())
			if e.Payload(&p) != nil || p != want.payload || string(b) != want.data || e.Attempts() != want.attempts {
				t.Fatalf("entry %s: payload %d data %q attempts %d; model %+v", e.ID(), p, b, e.Attempts(), *want)
			}
			want.out = true
			m.held = append(m.held, e)
		},
		"done": func(t *rapid.T) {
			e, me := m.pick(t)
			if err := e.Done(); err != nil {
				t.Fatal(err)
			}
			delete(m.entries, me.id)
		},
		"release": func(t *rapid.T) {
			e, me := m.pick(t)
			if err := e.Release(); err != nil {
				t.Fatal(err)
			}
			me.out = false
		},
		"fail": func(t *rapid.T) {
			e, me := m.pick(t)
			if err := e.Fail(errors.New("transient")); err != nil {
				t.Fatal(err)
			}
			me.out = false
			me.attempts++
			me.next = m.clk.Now().Add(m.opts.Backoff.Ceiling(me.attempts))
		},
		"fail permanently": func(t *rapid.T) {
			e, me := m.pick(t)
			if err := e.FailPermanently(errors.New("permanent")); err != nil {
				t.Fatal(err)
			}
			me.out, me.queue, me.next = false, FailedQueue, time.Time{}
		},
		"move": func(t *rapid.T) {
			e, me := m.pick(t)
			q := rapid.SampledFrom(propQueues[:2]).Draw(t, "to")
			if err := e.MoveTo(q); err != nil {
				t.Fatal(err)
			}
			me.out, me.queue, me.attempts, me.next = false, q, 0, time.Time{}
		},
		"update payload": func(t *rapid.T) {
			e, me := m.pick(t)
			p := rapid.Int().Draw(t, "payload")
			if err := e.UpdatePayload(p); err != nil {
				t.Fatal(err)
			}
			me.payload = p
			m.held = append(m.held, e)
		},
		"drop": func(t *rapid.T) {
			q := rapid.SampledFrom(propQueues).Draw(t, "queue")
			want := 0
			for id, e := range m.entries {
				if e.queue == q {
					want++
					delete(m.entries, id)
				}
			}
			n, _, err := m.s.DropQueue(q)
			if err != nil || n != want {
				t.Fatalf("DropQueue(%s) = %d, %v; model %d", q, n, err, want)
			}
			m.held = slices.DeleteFunc(m.held, func(e *Entry) bool {
				if e.Queue() != q {
					return false
				}
				if err := e.Release(); !errors.Is(err, ErrDropped) {
					t.Fatalf("Release of a dropped entry = %v", err)
				}
				return true
			})
		},
		"advance clock": func(t *rapid.T) {
			d := rapid.SampledFrom([]time.Duration{time.Millisecond, time.Second, 2 * time.Second, time.Minute}).Draw(t, "by")
			m.clk.Advance(d)
		},
		"reopen": func(t *rapid.T) {
			if err := m.s.Close(); err != nil {
				t.Fatal(err)
			}
			m.open(t)
			m.held = nil
			for _, e := range m.entries {
				e.out = false
			}
		},
	}
}

func TestProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir, err := os.MkdirTemp(t.TempDir(), "")
		if err != nil {
			rt.Fatal(err)
		}
		m := &model{
			t: t, dir: dir, clk: newClock(), entries: map[ID]*modelEntry{},
			opts: Options{MaxBytes: 64, Ordered: []string{"o"}, Backoff: Backoff{Base: time.Second, Max: 4 * time.Second}},
		}
		m.opts.Now = m.clk.Now
		m.open(rt)
		defer func() { m.s.Close(); os.RemoveAll(dir) }()
		rt.Repeat(m.actions())
	})
}
