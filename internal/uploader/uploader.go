// Package uploader drains the spool to object stores: a pool of workers
// claims entries, sends each to every target that does not hold it yet,
// checks what the target holds afterwards, and removes the local copy only
// once every target has confirmed. An entry may be a bundle of small files
// (Job.Files), whose files go out side by side, each under its own key;
// Options.Workers bounds the requests in flight either way.
package uploader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/ferrydb/ferry/internal/failrun"
	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/spool"
)

// Opener returns the store for a replica URL. The uploader calls it once
// per URL and keeps the store.
type Opener func(ctx context.Context, url string) (objstore.Store, error)

// Options configure an Uploader.
type Options struct {
	// Queue is the spool queue to drain; empty means FilesQueue.
	Queue string
	// Workers is how many entries are shipped at once, and how many
	// requests may be in flight; zero means 4. Behind each, up to
	// 2*finishers entries already shipped wait for, or are in, their
	// Done.
	Workers int
	Log     *slog.Logger
	// Shipped, when set, is told of each entry every target confirmed.
	Shipped func(id spool.ID, job Job)
	// DoneDelay, when positive, lets an entry every target confirmed
	// wait up to that long to be removed from the spool together with
	// the others shipped meanwhile (spool.DoneAll): one fsync for many
	// entries rather than about one each. Leave it zero for an ordered
	// queue, whose next entry waits for the last one to be done.
	DoneDelay time.Duration
}

// Uploader ships spool entries to their targets.
type Uploader struct {
	sp   *spool.Spool
	open Opener
	o    Options

	// sends bounds the requests in flight at once to Workers: a worker
	// shipping a bundle sends its files side by side, each holding one.
	sends chan struct{}

	mu     sync.Mutex
	stores map[string]objstore.Store

	// failures follows failed attempts for the log.
	failures failrun.Run
}

// New returns an uploader for sp.
func New(sp *spool.Spool, open Opener, o Options) *Uploader {
	if o.Queue == "" {
		o.Queue = FilesQueue
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Uploader{sp: sp, open: open, o: o, sends: make(chan struct{}, o.Workers), stores: make(map[string]objstore.Store)}
}

// Run ships entries until ctx ends or the spool closes. An entry a worker
// holds when ctx ends is released untouched for the next run.
func (u *Uploader) Run(ctx context.Context) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var d *doner
	if u.o.DoneDelay > 0 {
		d = &doner{sp: u.sp, delay: u.o.DoneDelay, in: make(chan *spool.Entry, maxDoneBatch), stop: stop, ended: make(chan struct{})}
		go d.run()
	}
	var wg sync.WaitGroup
	errs := make(chan error, u.o.Workers)
	for range u.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- u.lane(ctx, d)
		}()
	}
	wg.Wait()
	close(errs)
	if d != nil {
		close(d.in)
		<-d.ended
		if d.err != nil {
			return d.err
		}
	}
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, spool.ErrClosed) {
			return err
		}
	}
	return nil
}

// Failing returns since when uploads have been failing, and the newest
// failure; a zero time while they work.
func (u *Uploader) Failing() (since time.Time, last error) { return u.failures.Failing() }

// maxDoneBatch is the most entries a doner finishes with one DoneAll.
const maxDoneBatch = 256

// doner finishes the entries the workers shipped in batches: each waits
// at most delay for others to join it (Options.DoneDelay).
type doner struct {
	sp    *spool.Spool
	delay time.Duration
	in    chan *spool.Entry
	stop  func() // stops the workers after a failure
	ended chan struct{}
	err   error // the first failure, read once ended is closed
}

func (d *doner) run() {
	defer close(d.ended)
	var batch []*spool.Entry
	for e := range d.in {
		batch = append(batch[:0], e)
		timer := time.NewTimer(d.delay)
	collect:
		for len(batch) < maxDoneBatch {
			select {
			case e, ok := <-d.in:
				if !ok {
					break collect
				}
				batch = append(batch, e)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		// As when a Done fails alone: the entries not finished stay
		// checked out, to be handed out again by the next Open, and
		// the workers stop.
		if err := d.sp.DoneAll(batch); err != nil && d.err == nil && !errors.Is(err, spool.ErrClosed) {
			d.err = err
			d.stop()
		}
	}
}

// finishers is how many entries of one worker may be in the spool's
// hands at once (Done and the fsync that makes it durable) while the
// worker ships the next. A Done waits for a fsync; for a small file
// that is as long as the upload itself, and a worker that waited for it
// would leave the store idle half the time. Concurrent Dones share their
// fsyncs (the spool groups them), so overlapping them costs no more disk
// flushes, only a few more entries checked out at once.
const finishers = 2

// shipped is an entry a worker has tried, with the outcome.
type shipped struct {
	e   *spool.Entry
	err error
}

// lane is one worker: a loop that claims and ships entries, and
// finishers that record each outcome in the spool behind it. It ends as
// the worker did when it ran alone: when ctx ends or the spool closes, or
// at the first outcome it cannot record, after recording those already
// handed to it.
func (u *Uploader) lane(ctx context.Context, d *doner) error {
	laneCtx, stop := context.WithCancel(ctx)
	defer stop()
	tried := make(chan shipped, finishers)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range finishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range tried {
				// An entry whose queue was dropped while it was out
				// is simply gone (the capture drops a change-set
				// backlog when the spool is full); the lane carries
				// on with the next one.
				if err := u.finish(laneCtx, t.e, t.err, d); err != nil && !errors.Is(err, spool.ErrDropped) {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					stop()
				}
			}
		}()
	}
	err := u.work(laneCtx, tried)
	close(tried)
	wg.Wait()
	if first != nil {
		return first
	}
	return err
}

func (u *Uploader) work(ctx context.Context, tried chan<- shipped) error {
	for {
		// Checked before claiming: an entry released because ctx ended
		// is ready again at once, and claiming it would spin.
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := u.sp.Wait(ctx, u.o.Queue)
		if err != nil {
			return err
		}
		tried <- shipped{e, u.ship(ctx, e)}
	}
}

// finish records the outcome of one attempt at e in the spool, or with
// d, hands a shipped entry to it to be done.
func (u *Uploader) finish(ctx context.Context, e *spool.Entry, shipErr error, d *doner) error {
	log := u.o.Log.With("entry", e.ID())
	if shipErr == nil {
		if failed, since := u.failures.Succeed(); failed > 0 {
			u.o.Log.Info("uploads succeed again", "failed_attempts", failed, "failing_for", time.Since(since).Round(time.Millisecond))
		}
		if d != nil {
			d.in <- e
			return nil
		}
		return e.Done()
	}
	switch {
	case ctx.Err() != nil:
		// Stopping, not failing: the entry goes back as it was.
		return e.Release()
	case permanent(shipErr):
		log.Error("upload failed permanently; entry moved to the failed queue", "err", shipErr)
		return e.FailPermanently(shipErr)
	}
	switch news, failed, since := u.failures.Fail(time.Now(), shipErr); news {
	case failrun.Began:
		log.Warn("upload failed; retrying with backoff, further failures logged at debug level until an upload succeeds",
			"attempts", e.Attempts()+1, "err", shipErr)
	case failrun.Reminder:
		log.Warn("uploads still failing; retrying with backoff", "failed_attempts", failed, "since", since.Format(time.RFC3339), "err", shipErr)
	default:
		log.Debug("upload failed; will retry", "attempts", e.Attempts()+1, "err", shipErr)
	}
	return e.Fail(shipErr)
}

// permanent reports whether retrying can never help: the store refused the
// request for a reason other than load or a passing fault, or the entry
// itself is unusable. A failed condition is one whatever the backend (a
// file store has no status code): the key a create-only write wanted is
// taken, and will still be on the next try.
func permanent(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) || objstore.IsPreconditionFailed(err) {
		return true
	}
	var se *objstore.Error
	return errors.As(err, &se) && se.StatusCode >= 400 && !objstore.Transient(err)
}

// rememberSumFrom is the entry size from which the data's checksum is
// written back into the entry once computed.
const rememberSumFrom = 1 << 20

// smallEntry is the entry size up to which a worker reads the data into
// memory, with a read or two, and sends it from there: going through an
// *os.File costs a small file more system calls (the SDK seeks the body
// several times) than sending it.
const smallEntry = 256 << 10

// readSmall reads the size bytes of a spooled entry's data.
func readSmall(path string, size int64) ([]byte, error) {
	fd, err := openRead(path)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	// Open indexed the entry only with data of the size its meta gives,
	// and nothing writes to an entry after that.
	buf := make([]byte, size)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	if int64(n) != size {
		return nil, fmt.Errorf("%s holds %d bytes, its entry %d", path, n, size)
	}
	return buf[:n], nil
}

// openRead opens path read-only, without the registration with the
// runtime's poller that os.Open attempts (several system calls that fail
// for a regular file).
func openRead(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// ship sends e to each pending target, recording each confirmation.
func (u *Uploader) ship(ctx context.Context, e *spool.Entry) error {
	var job Job
	if err := e.Payload(&job); err != nil {
		return &permanentError{err}
	}
	if len(job.Files) > 0 {
		return u.shipBundle(ctx, e, job)
	}
	if err := CheckKey(job.Key); err != nil {
		return &permanentError{err}
	}
	var body io.ReadSeeker
	if e.Size() <= smallEntry {
		data, err := readSmall(e.Path(), e.Size())
		if err != nil {
			return &permanentError{fmt.Errorf("read spooled data: %w", err)}
		}
		if job.SHA256 == "" {
			sum := sha256.Sum256(data)
			job.SHA256 = hex.EncodeToString(sum[:])
		}
		body = bytes.NewReader(data)
	} else {
		f, err := os.Open(e.Path())
		if err != nil {
			return &permanentError{fmt.Errorf("open spooled data: %w", err)}
		}
		defer f.Close()
		body = f
	}
	if job.SHA256 == "" {
		sum, _, err := objstore.HashBody(body)
		if err != nil {
			return fmt.Errorf("hash spooled data: %w", err)
		}
		job.SHA256 = sum
		// Recording the sum spares a retry the hashing pass. For a small
		// file that pass costs less than the fsync that records it.
		if e.Size() >= rememberSumFrom {
			if err := e.UpdatePayload(job); err != nil {
				return err
			}
		}
	}
	return u.toEachTarget(e, job, func(url string) error {
		if err := u.send(ctx, url, body, e.Size(), job, e.Attempts() > 0); err != nil {
			return fmt.Errorf("ship %s to %s: %w", job.Key, url, err)
		}
		return nil
	})
}

// toEachTarget runs send for each target job still lists, in turn, and
// then tells Options.Shipped. With targets left, it records each one's
// confirmation in e, so that a restart does not send to it again; after
// the last, Done records everything.
func (u *Uploader) toEachTarget(e *spool.Entry, job Job, send func(url string) error) error {
	for len(job.Pending) > 0 {
		if err := send(job.Pending[0]); err != nil {
			return err
		}
		job.Pending = slices.Delete(job.Pending, 0, 1)
		if len(job.Pending) > 0 {
			if err := e.UpdatePayload(job); err != nil {
				return err
			}
		}
	}
	if u.o.Shipped != nil {
		u.o.Shipped(e.ID(), job)
	}
	return nil
}

// shipBundle sends each file of the bundle e to each pending target,
// side by side, recording each target's confirmation of all of them. A
// retry asks a target for each file before sending it (shipTo), so the
// files an earlier attempt landed are not sent again.
func (u *Uploader) shipBundle(ctx context.Context, e *spool.Entry, job Job) error {
	if job.Key != "" {
		return &permanentError{fmt.Errorf("bundle names a key of its own (%q)", job.Key)}
	}
	if e.Size() > MaxBundleBytes {
		return &permanentError{fmt.Errorf("bundle of %d bytes, more than the %d a bundle may hold", e.Size(), MaxBundleBytes)}
	}
	for _, f := range job.Files {
		if err := CheckKey(f.Key); err != nil {
			return &permanentError{err}
		}
		if len(f.SHA256) != sha256.Size*2 {
			return &permanentError{fmt.Errorf("bundled file %s: sha256 %q", f.Key, f.SHA256)}
		}
	}
	data, err := readSmall(e.Path(), e.Size())
	if err != nil {
		return &permanentError{fmt.Errorf("read spooled data: %w", err)}
	}
	parts, err := job.Parts(data)
	if err != nil {
		return &permanentError{err}
	}
	return u.toEachTarget(e, job, func(url string) error {
		return u.sendBundle(ctx, url, parts, job, e.Attempts() > 0)
	})
}

// sendBundle makes url hold every file of the bundle job, whose bytes are
// parts, sending them side by side. It returns the first failure, after
// every file sent has had its answer.
func (u *Uploader) sendBundle(ctx context.Context, url string, parts [][]byte, job Job, retry bool) error {
	// The first failure stops the files not yet sent: a store that is
	// down would otherwise see a request (and its retries) for each.
	sendCtx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	// The files go out in their order, each as soon as a request may
	// start.
	for i, f := range job.Files {
		body := parts[i]
		if !u.acquire(sendCtx) {
			break
		}
		if sendCtx.Err() != nil {
			u.release()
			break
		}
		one := Job{Key: f.Key, SHA256: f.SHA256, Sealed: job.Sealed}
		wg.Go(func() {
			defer u.release()
			err := u.shipTo(sendCtx, url, bytes.NewReader(body), f.Size, one, retry)
			if err == nil {
				return
			}
			mu.Lock()
			if first == nil {
				first = fmt.Errorf("ship %s to %s: %w", f.Key, url, err)
				stop()
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// acquire takes one of the requests that may be in flight at once, or
// reports false once ctx ends.
func (u *Uploader) acquire(ctx context.Context) bool {
	select {
	case u.sends <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (u *Uploader) release() { <-u.sends }

// send is shipTo within the bound on requests in flight.
func (u *Uploader) send(ctx context.Context, url string, f io.ReadSeeker, size int64, job Job, retry bool) error {
	if !u.acquire(ctx) {
		return ctx.Err()
	}
	defer u.release()
	return u.shipTo(ctx, url, f, size, job, retry)
}

// shipTo makes url hold the data under job.Key, so that a confirmation
// always means the target has these bytes. A retry first asks whether the
// target has them already (the last attempt may have landed without its
// answer); a first attempt does not, since sending the same bytes again
// is harmless and the question would cost every upload a request. A PUT
// whose answer carries the SHA-256 the store checked the body against
// needs no reading back; one without is confirmed with a HEAD.
func (u *Uploader) shipTo(ctx context.Context, url string, f io.ReadSeeker, size int64, job Job, retry bool) error {
	store, err := u.store(ctx, url)
	if err != nil {
		return err
	}
	if job.Sealed {
		store = seal.Raw(store)
	}
	if retry && same(ctx, store, job.Key, size, job.SHA256) {
		return nil
	}
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	info, err := store.Put(ctx, job.Key, f, objstore.PutOptions{SHA256: job.SHA256})
	if err != nil {
		return err
	}
	if info.SHA256 == job.SHA256 && (info.Size == 0 || info.Size == size) {
		return nil
	}
	info, err = store.Head(ctx, job.Key)
	if err != nil {
		return fmt.Errorf("confirm upload: %w", err)
	}
	if info.Size != size || (info.SHA256 != "" && info.SHA256 != job.SHA256) {
		return fmt.Errorf("confirm upload: target holds %d bytes with sha256 %q, sent %d bytes with sha256 %s",
			info.Size, info.SHA256, size, job.SHA256)
	}
	return nil
}

func same(ctx context.Context, store objstore.Store, key string, size int64, sum string) bool {
	info, err := store.Head(ctx, key)
	return err == nil && info.Size == size && info.SHA256 == sum
}

func (u *Uploader) store(ctx context.Context, url string) (objstore.Store, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s, ok := u.stores[url]; ok {
		return s, nil
	}
	s, err := u.open(ctx, url)
	if err != nil {
		return nil, &permanentError{err}
	}
	u.stores[url] = s
	return s, nil
}
