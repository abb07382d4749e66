package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Entry is an entry checked out by Claim. Exactly one of Done, MoveTo,
// Fail, FailPermanently or Release finishes it; after that its methods that
// change it return ErrNotHeld. An Entry is safe for concurrent use, though
// one worker normally owns it.
type Entry struct {
	s     *Spool
	it    *item
	queue string

	mu   sync.Mutex
	m    meta
	held bool
}

// ID returns the entry's ID.
func (e *Entry) ID() ID { return e.it.id }

// Queue returns the queue the entry was claimed from.
func (e *Entry) Queue() string { return e.queue }

// Path returns the path of the entry's data, valid while it is checked out.
func (e *Entry) Path() string {
	return filepath.Join(outPath(e.s.dir, e.queue, e.it.id), dataName)
}

// Size returns the length of the entry's data.
func (e *Entry) Size() int64 { return e.it.size }

// Created returns when the entry was enqueued.
func (e *Entry) Created() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m.Created
}

// Attempts returns how many times Fail was called on the entry, across
// restarts.
func (e *Entry) Attempts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m.Attempts
}

// LastError returns the error recorded by the last Fail or
// FailPermanently, or "".
func (e *Entry) LastError() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m.LastError
}

// Payload decodes the entry's payload into v; an entry enqueued without one
// leaves v untouched.
func (e *Entry) Payload(v any) error {
	e.mu.Lock()
	raw := e.m.Payload
	e.mu.Unlock()
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode payload of entry %s: %w", e.it.id, err)
	}
	return nil
}

// UpdatePayload replaces the payload, durably and atomically: after a crash
// the entry has the old payload or the new one. The uploader records there
// which targets already hold the entry.
func (e *Entry) UpdatePayload(v any) error {
	raw, err := marshalPayload(v)
	if err != nil {
		return err
	}
	return e.hold("update payload of", func() (bool, error) {
		m := e.m
		m.Payload = raw
		if err := writeMeta(e.outDir(), &m); err != nil {
			return false, err
		}
		e.m = m
		return false, nil
	})
}

// Done removes the entry, durably. A crash before Done returns leaves the
// entry whole, to be handed out again, or gone; never half of it. Done of an
// entry whose queue was dropped returns nil: it is gone either way.
func (e *Entry) Done() error {
	var gone string
	var spare bool
	err := e.hold("finish", func() (bool, error) {
		var err error
		if gone, spare, err = e.finish(); err != nil {
			return false, err
		}
		// Renaming into tmp/ or spare/ makes Done one atomic step;
		// fsyncing checkout/ makes it durable (both are swept by Open).
		err = e.s.groupSync(checkoutDir(e.s.dir, e.queue))
		e.s.dispose(gone, spare, err == nil)
		return true, err
	})
	if errors.Is(err, ErrDropped) {
		return nil
	}
	return err
}

// finish renames the entry out of checkout/, into spare/ or tmp/ (see
// spareDir), and forgets it. The caller holds e.mu and s.ops, and makes
// the rename durable.
func (e *Entry) finish() (gone string, spare bool, err error) {
	s := e.s
	gone, spare = s.spareDir(e.it)
	if err := moveEntry(e.outDir(), gone); err != nil {
		if spare {
			s.keepSpare(gone, false)
		}
		return "", false, err
	}
	s.mu.Lock()
	q := s.queues[e.queue]
	delete(q.out, e.it.id)
	q.bytes -= e.it.size
	s.bytes -= e.it.size
	q.notify() // an ordered queue may hand out its next entry
	s.mu.Unlock()
	return gone, spare, nil
}

// dispose keeps or removes the directory of a finished entry once the
// fsync that made its finish durable is over, ok if it succeeded.
func (s *Spool) dispose(gone string, spare, ok bool) {
	if spare {
		s.keepSpare(gone, ok)
	} else {
		removeEntryQuiet(gone)
	}
}

// DoneAll is Done of each of es, with the fsyncs of their checkout/
// directories shared: one for all the entries of a queue, rather than a
// round each. It returns once every entry it finished is durably gone,
// with the first error; an entry it could not finish stays checked out,
// as after a failed Done. An entry whose queue was dropped is gone
// either way, as with Done.
func (s *Spool) DoneAll(es []*Entry) error {
	if err := s.begin(); err != nil {
		return fmt.Errorf("finish %d entries in spool %s: %w", len(es), s.dir, err)
	}
	defer s.end()
	type finished struct {
		gone  string
		spare bool
	}
	var (
		first error
		done  []finished
		dirs  []string
	)
	for _, e := range es {
		if e.s != s {
			return fmt.Errorf("finish entry %s in spool %s: it belongs to spool %s", e.it.id, s.dir, e.s.dir)
		}
		e.mu.Lock()
		var err error
		switch {
		case !e.held:
			err = ErrNotHeld
		case e.isDropped():
			e.held = false
		default:
			var f finished
			if f.gone, f.spare, err = e.finish(); err == nil {
				e.held = false
				done = append(done, f)
				if d := checkoutDir(s.dir, e.queue); !slices.Contains(dirs, d) {
					dirs = append(dirs, d)
				}
			}
		}
		e.mu.Unlock()
		if err != nil && first == nil {
			first = fmt.Errorf("finish entry %s of queue %s in spool %s: %w", e.it.id, e.queue, s.dir, err)
		}
	}
	err := s.groupSync(dirs...)
	for _, f := range done {
		s.dispose(f.gone, f.spare, err == nil)
	}
	if first == nil && err != nil {
		first = fmt.Errorf("finish %d entries in spool %s: %w", len(done), s.dir, err)
	}
	return first
}

// isDropped reports whether DropQueue removed the entry while it was
// out; it then lets go of it. The caller holds e.mu.
func (e *Entry) isDropped() bool {
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	return e.it.dropped
}

// Release puts the entry back in its queue untouched, claimable at once.
// Like a claim, the rename is not fsynced: a crash that undoes it leaves
// the entry in checkout/, from where Open puts it back.
func (e *Entry) Release() error {
	return e.hold("release", func() (bool, error) {
		if err := moveEntry(e.outDir(), readyPath(e.s.dir, e.queue, e.it.id)); err != nil {
			return false, err
		}
		e.requeue(e.it.next)
		return true, nil
	})
}

// Fail records a transient failure: it counts the attempt, sets the next
// try after a backoff (Options.Backoff), records cause, and puts the entry
// back in its queue, all durably. If the meta cannot be written (a full
// disk) the entry still goes back with its backoff, kept in memory only, and
// Fail returns the error.
func (e *Entry) Fail(cause error) error {
	return e.hold("fail", func() (bool, error) {
		s := e.s
		m := e.m
		m.Attempts++
		m.NextTry = s.now().Add(s.opts.Backoff.delay(m.Attempts, s.jitter))
		m.LastError = errText(cause)
		werr := writeMeta(e.outDir(), &m)
		if err := moveEntry(e.outDir(), readyPath(s.dir, e.queue, e.it.id)); err != nil {
			return false, err
		}
		e.m = m
		e.requeue(m.NextTry)
		if werr != nil {
			return true, fmt.Errorf("attempt %d not recorded on disk: %w", m.Attempts, werr)
		}
		return true, s.groupSync(checkoutDir(s.dir, e.queue), queueDir(s.dir, e.queue))
	})
}

// FailPermanently moves the entry to the failed queue with cause as its
// reason, durably, so that it stops blocking the entries behind it. Failed
// lists such entries.
func (e *Entry) FailPermanently(cause error) error {
	return e.hold("fail", func() (bool, error) {
		s := e.s
		m := e.m
		m.LastError = errText(cause)
		m.FailedAt = s.now()
		m.NextTry = time.Time{}
		if e.queue != FailedQueue {
			m.From = e.queue
		}
		if err := writeMeta(e.outDir(), &m); err != nil {
			return false, err
		}
		e.m = m
		return e.move(FailedQueue)
	})
}

// MoveTo moves the entry into another queue, durably, as a fresh entry
// there: its attempts and backoff are reset (its last error stays, for
// history). Moving an entry from the failed queue back where it failed
// retries it.
func (e *Entry) MoveTo(queue string) error {
	if err := checkQueue(queue); err != nil {
		return err
	}
	return e.hold("move", func() (bool, error) {
		m := e.m
		if m.Attempts != 0 || !m.NextTry.IsZero() || !m.FailedAt.IsZero() || m.From != "" {
			m.Attempts, m.NextTry, m.FailedAt, m.From = 0, time.Time{}, time.Time{}, ""
			if err := writeMeta(e.outDir(), &m); err != nil {
				return false, err
			}
			e.m = m
		}
		return e.move(queue)
	})
}

// move renames the checked-out entry into queue's ready directory.
func (e *Entry) move(queue string) (bool, error) {
	s := e.s
	if err := s.ensureQueueDir(queue); err != nil {
		return false, err
	}
	if err := moveEntry(e.outDir(), readyPath(s.dir, queue, e.it.id)); err != nil {
		return false, err
	}
	s.mu.Lock()
	from, to := s.queues[e.queue], s.queue(queue)
	delete(from.out, e.it.id)
	from.bytes -= e.it.size
	from.notify()
	to.bytes += e.it.size
	e.it.next = e.m.NextTry
	to.put(e.it, s.now())
	to.notify()
	s.mu.Unlock()
	return true, s.groupSync(checkoutDir(s.dir, e.queue), queueDir(s.dir, queue))
}

// requeue files the item, back in its queue's directory, in the index.
func (e *Entry) requeue(next time.Time) {
	s := e.s
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[e.queue]
	delete(q.out, e.it.id)
	e.it.next = next
	q.put(e.it, s.now())
	q.notify()
}

func (e *Entry) outDir() string { return outPath(e.s.dir, e.queue, e.it.id) }

// hold runs f while the entry is checked out and the spool open; f reports
// whether it finished the entry. Errors name the entry and the spool.
func (e *Entry) hold(op string, f func() (bool, error)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	wrap := func(err error) error {
		return fmt.Errorf("%s entry %s of queue %s in spool %s: %w", op, e.it.id, e.queue, e.s.dir, err)
	}
	if !e.held {
		return wrap(ErrNotHeld)
	}
	if err := e.s.begin(); err != nil {
		return wrap(err)
	}
	defer e.s.end()
	e.s.mu.Lock()
	dropped := e.it.dropped
	e.s.mu.Unlock()
	if dropped {
		e.held = false
		return wrap(ErrDropped)
	}
	finished, err := f()
	if finished {
		e.held = false
	}
	if err != nil {
		return wrap(err)
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}
