package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ferrydb/ferry/internal/durable"
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

// retryName is the directory of incoming/ where processes that do not own
// the spool ask its owner for RetryFailed: an empty file named after the
// queue whose failed entries should go back to it. It starts with a dot,
// so Adopt never takes it for a queue.
const retryName = ".retry"

// RequestRetry asks the process that owns the spool in dir to move the
// entries that failed in queue back to it (RetryFailed), at its next poll
// (TakeRetryRequests): for `ferry spool retry` while a daemon runs. The
// request is durable once RequestRetry returns; asking twice is asking
// once.
func RequestRetry(dir, queue string) error {
	if err := checkQueue(queue); err != nil {
		return err
	}
	d := filepath.Join(dir, incomingName, retryName)
	for _, p := range []string{filepath.Join(dir, incomingName), d} {
		if err := mkdir(p); err != nil {
			return fmt.Errorf("ask for a retry in spool %s: %w", dir, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(d, queue), os.O_WRONLY|os.O_CREATE, filePerm)
	if err != nil {
		return fmt.Errorf("ask for a retry in spool %s: %w", dir, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ask for a retry in spool %s: %w", dir, err)
	}
	return durable.SyncDir(d)
}

// RetryRequested reports whether a request for queue, made with
// RequestRetry, still waits for the owner.
func RetryRequested(dir, queue string) bool {
	_, err := os.Lstat(filepath.Join(dir, incomingName, retryName, queue))
	return err == nil
}

// TakeRetryRequests carries out the requests other processes made with
// RequestRetry, removing each once done, and returns how many entries
// went back to their queues.
func (s *Spool) TakeRetryRequests() (moved int, err error) {
	d := filepath.Join(s.dir, incomingName, retryName)
	requests, err := os.ReadDir(d)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read retry requests in spool %s: %w", s.dir, err)
	}
	for _, r := range requests {
		p := filepath.Join(d, r.Name())
		if validQueue(r.Name()) {
			n, err := s.RetryFailed(r.Name())
			moved += n
			if err != nil {
				return moved, err
			}
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return moved, fmt.Errorf("remove retry request %s: %w", p, err)
		}
	}
	return moved, nil
}
