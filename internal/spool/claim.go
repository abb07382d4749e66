package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// Claim checks out the oldest entry of queue whose next try has come, by
// renaming it into the queue's checkout/ directory, and returns it for the
// caller to finish with Done, MoveTo, Fail, FailPermanently or Release.
// Concurrent Claims never return the same entry. When nothing is ready it
// returns an *EmptyError (errors.Is ErrEmpty) saying when something will be.
//
// The claim rename is not fsynced: if a crash undoes it, the entry is in
// its queue, which is where the next Open would have put it back anyway.
func (s *Spool) Claim(queue string) (*Entry, error) {
	e, _, err := s.claim(queue)
	return e, err
}

// Wait is Claim that blocks until an entry is ready, ctx ends, or the
// spool closes. It wakes for an entry enqueued, released or moved into the
// queue, and at the end of the earliest backoff.
func (s *Spool) Wait(ctx context.Context, queue string) (*Entry, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, changed, err := s.claim(queue)
		if err == nil {
			return e, nil
		}
		var empty *EmptyError
		if !errors.As(err, &empty) {
			return nil, err
		}
		var timer *time.Timer
		var due <-chan time.Time
		if !empty.Next.IsZero() {
			timer = time.NewTimer(max(empty.Next.Sub(s.now()), time.Millisecond))
			due = timer.C
		}
		err = nil
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.closing:
			err = ErrClosed
		case <-changed:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return nil, err
		}
	}
}

// claim is Claim that also returns, when nothing is ready, a channel closed
// on the next change to the queue. The channel is taken under the same lock
// as the decision, so a change right after it is never missed.
func (s *Spool) claim(name string) (*Entry, <-chan struct{}, error) {
	if err := checkQueue(name); err != nil {
		return nil, nil, err
	}
	if err := s.begin(); err != nil {
		return nil, nil, err
	}
	defer s.end()
	for {
		s.mu.Lock()
		q := s.queue(name)
		it, next := q.take(s.now())
		if it == nil {
			changed := q.changed
			s.mu.Unlock()
			return nil, changed, &EmptyError{Queue: name, Next: next}
		}
		it.state = stateOut
		q.out[it.id] = it
		kept := it.meta
		if kept != nil {
			it.meta = nil
			s.keptMetas--
		}
		s.mu.Unlock()

		src, dst := readyPath(s.dir, name, it.id), outPath(s.dir, name, it.id)
		err := moveEntry(src, dst)
		if err == nil {
			var m meta
			var merr error
			if kept != nil {
				m = *kept
			} else {
				m, merr = readMeta(dst)
			}
			if merr == nil {
				return &Entry{s: s, it: it, queue: name, m: m, held: true}, nil, nil
			}
			// Its meta became unreadable since Open indexed it (a
			// disk error, or a hand edit). Never hand out what we
			// cannot describe: put it back where Check reports it as
			// corrupt, and stop indexing it, so that it does not
			// block the entries behind it.
			_ = moveEntry(dst, src)
			s.mu.Lock()
			delete(q.out, it.id)
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		delete(q.out, it.id)
		if errors.Is(err, fs.ErrNotExist) {
			// Removed behind the spool's back; there is nothing left
			// to hand out or to count.
			q.bytes -= it.size
			s.bytes -= it.size
			s.mu.Unlock()
			continue
		}
		q.put(it, s.now())
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("claim %s from queue %s in spool %s: %w", it.id, name, s.dir, err)
	}
}
