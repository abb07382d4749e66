package capture

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/ferrydb/ferry/internal/layout"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/segment"
)

// ErrOtherWriter means that another writer stores change sets or
// manifests under a target's prefix: its history and this replicator's
// would interleave, so the target stops replicating.
var ErrOtherWriter = errors.New("another writer shares this replica")

// The object metadata that names the writer of a change set or manifest,
// so that the writer that finds its key taken can say by whom.
const (
	metaWriterHost = "ferry-writer-host"
	metaWriterPID  = "ferry-writer-pid"
	metaWriterID   = "ferry-writer-id"
)

// writerID names a replicator in the objects it writes. ID is chosen at
// random when the capture state is created and saved with it, so that a
// replicator restarted after a crash still knows its own earlier objects;
// host and pid are for the operator.
type writerID struct {
	host string
	pid  int
	id   string
}

func newWriterID(saved string) (writerID, error) {
	w := writerID{pid: os.Getpid(), id: saved}
	w.host, _ = os.Hostname()
	if w.id == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return writerID{}, fmt.Errorf("choose a writer id: %w", err)
		}
		w.id = hex.EncodeToString(b[:])
	}
	return w, nil
}

func (w writerID) metadata() map[string]string {
	return map[string]string{metaWriterHost: w.host, metaWriterPID: strconv.Itoa(w.pid), metaWriterID: w.id}
}

// ours reports whether meta names this replicator.
func (w writerID) ours(meta map[string]string) bool { return meta[metaWriterID] == w.id }

// describeWriter names the writer of an object from its metadata.
func describeWriter(meta map[string]string) string {
	if meta[metaWriterID] == "" {
		return "a writer that did not name itself"
	}
	return fmt.Sprintf("host %q, pid %s, writer id %s", meta[metaWriterHost], meta[metaWriterPID], meta[metaWriterID])
}

// conflictError is a create-only write that found its key taken by
// another writer's object.
type conflictError struct {
	url, key, other string
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("target %s: %s is already stored by another writer (%s); two replicators write to this replica, and this one stops replicating to it so that their histories do not interleave. Stop the other writer or give each its own replica URL, then restart ferry",
		e.url, e.key, e.other)
}

// Unwrap makes the error match ErrOtherWriter, and, for the uploader,
// objstore.ErrPreconditionFailed: retrying cannot help.
func (e *conflictError) Unwrap() []error {
	return []error{ErrOtherWriter, objstore.ErrPreconditionFailed}
}

// chainedStore is a target's store as its uploader sees it:
//
//   - A change set that carries on from a snapshot still in flight waits
//     for it (see targetState.holdAfter).
//   - Change sets and break markers under first-only keys are written
//     create-only and name their writer, so that a second writer on the
//     prefix stops the target with one clear error instead of
//     interleaving two histories (see layout's documentation).
//   - A key taken by this replicator's own object is no conflict: a Put
//     whose answer was lost and that was retried finds its own bytes, and
//     after a crash the capture spools again transactions it had spooled,
//     in a change set starting at the same txid.
type chainedStore struct {
	objstore.Store
	url    string
	p      *progress
	writer writerID
	tmpDir string

	mu sync.Mutex
	// standIns holds keys whose Put an object of ours that holds the same
	// transactions answered, with what was sent, so that the uploader's
	// confirmation (a Head of the key) sees the upload as done.
	standIns map[string]objstore.Info
}

func (s *chainedStore) Put(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	first, _, err := layout.ParseAnySegmentKey(key)
	if err != nil {
		return s.Store.Put(ctx, key, body, opts)
	}
	if err := s.p.waitChainable(ctx, s.url, first); err != nil {
		return objstore.Info{}, err
	}
	if err := s.p.stopped(s.url); err != nil {
		return objstore.Info{}, err
	}
	if _, err := layout.ParseChangeSetKey(key); err != nil {
		// A ranged key, spooled by an earlier ferry: no other writer's
		// change set would take the same one.
		return s.Store.Put(ctx, key, body, opts)
	}
	return s.create(ctx, key, body, opts)
}

func (s *chainedStore) Head(ctx context.Context, key string) (objstore.Info, error) {
	s.mu.Lock()
	info, ok := s.standIns[key]
	s.mu.Unlock()
	if ok {
		return info, nil
	}
	return s.Store.Head(ctx, key)
}

// create stores body under key, create-only.
func (s *chainedStore) create(ctx context.Context, key string, body io.ReadSeeker, opts objstore.PutOptions) (objstore.Info, error) {
	sum, size, err := objstore.HashBody(body)
	if err != nil {
		return objstore.Info{}, err
	}
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return objstore.Info{}, err
	}
	opts.SHA256, opts.IfNoneMatch, opts.Metadata = sum, true, s.writer.metadata()
	info, err := s.Store.Put(ctx, key, body, opts)
	if !objstore.IsPreconditionFailed(err) {
		return info, err
	}
	have, err := s.Store.Head(ctx, key)
	if err != nil {
		// Not a failed condition: whatever took the key may be gone by
		// the next try, which decides again.
		return objstore.Info{}, fmt.Errorf("%s is taken; read what holds it: %w", key, err)
	}
	if have.Size == size && have.SHA256 == sum {
		return have, nil
	}
	if !s.writer.ours(have.Metadata) {
		cerr := &conflictError{url: s.url, key: key, other: describeWriter(have.Metadata)}
		s.p.stop(s.url, cerr)
		return objstore.Info{}, cerr
	}
	if _, err := body.Seek(start, io.SeekStart); err != nil {
		return objstore.Info{}, err
	}
	if err := s.standIn(ctx, key, body, have); err != nil {
		return objstore.Info{}, err
	}
	sent := objstore.Info{Key: key, Size: size, SHA256: sum}
	s.mu.Lock()
	if s.standIns == nil {
		s.standIns = map[string]objstore.Info{}
	}
	s.standIns[key] = sent
	s.mu.Unlock()
	return sent, nil
}

// standIn answers a key taken by an object of ours with other bytes: a
// change set captured again after a crash, which holds the same
// transactions from the same first txid with other commit times and
// perhaps another last txid. The object there stands for body as far as
// it reaches; what body holds past it is stored from the txid after.
func (s *chainedStore) standIn(ctx context.Context, key string, body io.ReadSeeker, have objstore.Info) error {
	there, err := segment.Heads(s.Store).ReadHead(ctx, have)
	if err != nil {
		return fmt.Errorf("%s is taken by an earlier object of this replicator; read its header: %w", key, err)
	}
	start, err := body.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	b := make([]byte, segment.BreakSize)
	if _, err := io.ReadFull(body, b); err != nil {
		return fmt.Errorf("read the header of the change set for %s: %w", key, err)
	}
	mine, err := segment.ParseHead(b, key)
	if err != nil {
		return err
	}
	if _, err := body.Seek(start, io.SeekStart); err != nil {
		return err
	}
	switch {
	case mine.Break:
		// A change set of ours took the key after all: one that was
		// being uploaded when its backlog was dropped. The chain ends
		// after it instead, unless it reaches the snapshot that carries
		// the target on (or that snapshot is not known), from which
		// change sets follow without a break.
		if there.Last >= s.p.resumesAt(s.url) {
			return nil
		}
		next := there.Last + 1
		_, err := s.create(ctx, layout.ChangeSetKey(next), bytes.NewReader(segment.MarshalBreak(next)), objstore.PutOptions{})
		return err
	case there.Break:
		// Our own marker ended the chain before this change set, spooled
		// before a crash, could follow it. Refused for good, as the store
		// would refuse it: the target then carries on from a snapshot.
		return fmt.Errorf("%s holds this replicator's break marker, which ends the chain before this change set: %w", key, objstore.ErrPreconditionFailed)
	case there.Last >= mine.Last:
		return nil
	}
	tmp, err := os.CreateTemp(s.tmpDir, "trim-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h, err := segment.Trim(tmp, body, there.Last+1)
	if err != nil {
		return fmt.Errorf("cut the change set for %s after txid %d: %w", key, there.Last, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err = s.create(ctx, layout.ChangeSetKey(h.First), tmp, objstore.PutOptions{})
	return err
}
