package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"
)

// FailedEntry describes an entry in the failed queue.
type FailedEntry struct {
	ID       ID              `json:"id"`
	From     string          `json:"from"`   // queue it failed in
	Reason   string          `json:"reason"` // the error given to FailPermanently
	FailedAt time.Time       `json:"failed_at"`
	Created  time.Time       `json:"created"`
	Attempts int             `json:"attempts"`
	Size     int64           `json:"size"`
	Payload  json.RawMessage `json:"payload,omitempty"`
}

// Failed lists the entries that failed permanently, oldest first. To retry
// one, Claim it from FailedQueue and MoveTo its From queue.
func (s *Spool) Failed() ([]FailedEntry, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	var ids []ID
	s.mu.Lock()
	if q := s.queues[FailedQueue]; q != nil {
		for _, it := range q.ready {
			ids = append(ids, it.id)
		}
		for _, it := range q.waiting {
			ids = append(ids, it.id)
		}
		for id := range q.out {
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	slices.Sort(ids)
	out := make([]FailedEntry, 0, len(ids))
	for _, id := range ids {
		m, err := readMeta(readyPath(s.dir, FailedQueue, id))
		if errors.Is(err, fs.ErrNotExist) {
			// Claimed since we looked, or finished by its claimer.
			m, err = readMeta(outPath(s.dir, FailedQueue, id))
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list failed entries in spool %s: entry %s: %w", s.dir, id, err)
		}
		out = append(out, FailedEntry{
			ID: id, From: m.From, Reason: m.LastError, FailedAt: m.FailedAt,
			Created: m.Created, Attempts: m.Attempts, Size: m.Size, Payload: m.Payload,
		})
	}
	return out, nil
}

// RetryFailed moves each entry of the failed queue that failed in one of
// queues back to that queue as a fresh entry (its attempts and backoff
// reset, its last error kept), to be tried again now that whatever
// refused it may have been put right, and returns how many it moved.
// Entries that failed in other queues stay where they are.
func (s *Spool) RetryFailed(queues ...string) (moved int, err error) {
	var others []*Entry
	defer func() {
		for _, e := range others {
			if rerr := e.Release(); rerr != nil && err == nil {
				err = rerr
			}
		}
	}()
	for {
		e, err := s.Claim(FailedQueue)
		if errors.Is(err, ErrEmpty) {
			return moved, nil
		}
		if err != nil {
			return moved, err
		}
		if !slices.Contains(queues, e.m.From) {
			others = append(others, e)
			continue
		}
		if err := e.MoveTo(e.m.From); err != nil {
			return moved, errors.Join(err, e.Release())
		}
		moved++
	}
}
