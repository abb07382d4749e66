package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferrydb/ferry/internal/objstore"
	"github.com/ferrydb/ferry/internal/seal"
	"github.com/ferrydb/ferry/internal/spool"
	"github.com/ferrydb/ferry/internal/target"
	"github.com/ferrydb/ferry/internal/uploader"
)

// pusher carries out one 'ferry push'.
type pusher struct {
	*app
	url   string
	dir   string // the files spool
	files []pushFile
	store objstore.Store // the replica, with -wait
	// sealed says each file's path holds its ciphertext (-key-file), to
	// be stored as it is.
	sealed bool
}

// A push spools its files in batches (spool.Batch): the entries of a
// batch are made durable together (one syncfs on Linux) and become
// visible together, so that a directory of small files costs a few disk
// flushes per batch rather than several per file. A batch closes at pushBatchFiles files or
// pushBatchBytes bytes, whichever comes first, so that with -wait the
// upload of the first files starts while later ones are still being
// spooled, and a large file is its own batch.
const (
	pushBatchFiles = 256
	pushBatchBytes = 16 << 20
)

// pushAhead is how many of its files a push -wait lets wait in the spool
// for upload: it starts a batch only while no more than pushAhead minus
// a batch are committed and not yet shipped. The spool then keeps the
// directories of the entries shipped (spool.Done) for the next batches
// to be built in, which spares creating and deleting a directory and two
// files per file, and holds a few batches rather than a whole tree.
const pushAhead = 4 * pushBatchFiles

// pushWorkers is how many files the uploader of a push -wait sends at
// once. Small files are bound by round trips, not bandwidth: on versitygw
// 8 at a time did best (4 did about 10% less, 16 and 32 no better), and
// more than the S3 client's 10 idle connections would open a new
// connection for many requests.
const pushWorkers = 8

func (p *pusher) push(ctx context.Context, wait bool) error {
	sp, err := spool.Open(p.dir, spool.Options{})
	var inUse *spool.InUseError
	switch {
	case errors.As(err, &inUse):
		return p.handOff(ctx, inUse.Pid, wait)
	case err != nil:
		return err
	}
	defer sp.Close()
	for _, f := range p.files {
		if err := uploader.CheckKey(f.key); err != nil {
			return err
		}
	}
	if !wait {
		n, err := p.spoolFiles(ctx, sp, nil, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(p.stderr, "ferry push: spooled %d file(s) in %s; no daemon is running there, so they upload when 'ferry replicate' starts on it or with 'ferry push -wait'\n", n, p.dir)
		return nil
	}
	return p.ship(ctx, sp)
}

// A push spools files of up to uploader.BundleFileMax in bundles
// (uploader.Bundle): one spool entry, with one directory, two files and
// three renames, for the small files of a batch, where a file alone
// costs as much.

// spoolFiles spools p.files in batches, telling committed of each batch
// once it is durable (each entry's ID with the files it holds), and
// returns how many files it spooled. With room, it waits on it before
// starting each batch. On an error the files of the batches committed
// before it stay queued.
func (p *pusher) spoolFiles(ctx context.Context, sp *spool.Spool, committed func([]spool.ID, [][]pushFile), room func(context.Context) error) (int, error) {
	b, err := sp.NewBatch(uploader.FilesQueue)
	if err != nil {
		return 0, err
	}
	var (
		n       int
		entries [][]pushFile // the files of each entry staged in b, in order
		inBatch int          // files staged in b or in bun
		bytes   int64
		bun     uploader.Bundle
		bunned  []pushFile // the files in bun
	)
	// flush stages the bundle being filled, if any, as an entry of b.
	flush := func() error {
		if bun.Len() == 0 {
			return nil
		}
		job, data := bun.Job([]string{p.url}, p.sealed)
		err := b.AddBytes(job, data)
		if err == nil {
			entries = append(entries, bunned)
		}
		bunned = nil
		return err
	}
	commit := func() error {
		ferr := flush()
		ids, err := b.Commit()
		if committed != nil && len(ids) > 0 {
			committed(ids, entries[:len(ids)])
		}
		for _, e := range entries[:len(ids)] {
			n += len(e)
		}
		entries, inBatch, bytes = nil, 0, 0
		if ferr != nil {
			return fmt.Errorf("spool a bundle of small files: %w (files spooled before it stay queued)", ferr)
		}
		if err != nil {
			return fmt.Errorf("%w (files spooled before it stay queued)", err)
		}
		return nil
	}
	for _, f := range p.files {
		err := ctx.Err()
		if err == nil && room != nil && inBatch == 0 {
			err = room(ctx)
		}
		if err != nil {
			b.Discard()
			return n, fmt.Errorf("push stopped with %d of %d file(s) spooled (they stay queued): %w", n, len(p.files), err)
		}
		alone := f.size > uploader.BundleFileMax
		if !alone {
			if int64(bun.Size())+f.size > uploader.MaxBundleBytes {
				if err := flush(); err != nil {
					if cerr := commit(); cerr != nil {
						return n, cerr
					}
					return n, fmt.Errorf("spool a bundle of small files: %w (files spooled before it stay queued)", err)
				}
			}
			_, err = bun.Add(f.path, f.key)
			if alone = errors.Is(err, uploader.ErrTooLarge); alone {
				err = nil
			} else if err == nil {
				bunned = append(bunned, f)
			}
		}
		if err == nil && alone {
			err = b.AddFile(p.job(f), f.path)
			if err == nil {
				entries = append(entries, []pushFile{f})
			}
		}
		if err != nil {
			// What is staged is sound: it stays, as the files
			// spooled before a failure always have.
			if cerr := commit(); cerr != nil {
				return n, cerr
			}
			return n, fmt.Errorf("spool %s: %w (files spooled before it stay queued)", f.path, err)
		}
		inBatch++
		bytes += f.size
		if inBatch >= pushBatchFiles || bytes >= pushBatchBytes {
			if err := commit(); err != nil {
				return n, err
			}
		}
	}
	return n, commit()
}

// ship runs an uploader on the spool this process owns while it spools
// p.files, until every one of them has reached the replica or failed for
// good.
func (p *pusher) ship(ctx context.Context, sp *spool.Spool) error {
	var total int64
	for _, f := range p.files {
		total += f.size
	}
	t := &shipTracker{
		bar:     newProgress(p.stderr, total, "uploading"),
		pending: map[spool.ID][]pushFile{},
		early:   map[spool.ID]bool{},
		allDone: make(chan struct{}),
		shipped: make(chan struct{}, 1),
	}
	// Shipped entries leave the spool in groups (FilesDoneDelay); the
	// spare directories they leave are where later batches are built. A
	// push returns once its last files are done, without waiting out the
	// delay.
	u := uploader.New(sp, func(ctx context.Context, url string) (objstore.Store, error) {
		if url == p.url {
			return p.store, nil
		}
		// Entries left by an earlier push to another replica ship too.
		return target.OpenURL(ctx, url, target.Options{})
	}, uploader.Options{Log: p.log, Workers: pushWorkers, Shipped: t.ship, DoneDelay: uploader.FilesDoneDelay})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- u.Run(runCtx) }()
	spooled := make(chan error, 1)
	go func() {
		_, err := p.spoolFiles(runCtx, sp, t.committed, t.room)
		spooled <- err
	}()
	// end stops the spooling, if still under way, and the uploader.
	spooling := true
	end := func() error {
		stop()
		if spooling {
			<-spooled
		}
		return <-runErr
	}

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-spooled:
			spooling = false
			if err != nil {
				end()
				return err
			}
			t.spooledAll()
		case <-t.allDone:
			t.bar.finish()
			if err := end(); err != nil {
				return err
			}
			fmt.Fprintf(p.stderr, "ferry push: %d file(s) durable in %s\n", len(p.files), p.url)
			return nil
		case err := <-runErr:
			if err == nil {
				err = ctx.Err()
			}
			stop()
			if spooling {
				<-spooled
			}
			return fmt.Errorf("uploader stopped with %d file(s) not yet shipped (they stay spooled in %s): %w", len(p.files)-t.shippedCount(), p.dir, err)
		case <-tick.C:
			if err := p.failedOnes(sp, t); err != nil {
				end()
				return err
			}
		}
	}
}

// shipTracker follows the entries of one push -wait from their commit to
// their confirmation by the uploader. The uploader may ship an entry
// before the commit that made it visible has returned its ID, so an ID
// it does not know yet is kept in early for the commit to find.
type shipTracker struct {
	bar *progress

	mu       sync.Mutex
	pending  map[spool.ID][]pushFile // committed, not yet shipped
	nPending int                     // files in pending
	early    map[spool.ID]bool       // shipped, not yet known as committed
	nShipped int
	all      bool // every file is committed
	allDone  chan struct{}
	closed   bool          // allDone is closed
	shipped  chan struct{} // told, without waiting, of each file shipped
}

func (t *shipTracker) committed(ids []spool.ID, files [][]pushFile) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, id := range ids {
		if t.early[id] {
			delete(t.early, id)
			t.done(files[i])
			continue
		}
		t.pending[id] = files[i]
		t.nPending += len(files[i])
	}
	t.check()
}

func (t *shipTracker) ship(id spool.ID, _ uploader.Job) {
	t.mu.Lock()
	defer t.mu.Unlock()
	files, ok := t.pending[id]
	if !ok {
		// Committed by this push and not yet reported, or an entry
		// an earlier push left: either way kept until a commit
		// claims it, which for the latter is never.
		t.early[id] = true
		return
	}
	delete(t.pending, id)
	t.nPending -= len(files)
	t.done(files)
	t.check()
	select {
	case t.shipped <- struct{}{}:
	default:
	}
}

// room returns once a new batch fits under pushAhead files committed and
// not yet shipped, or when ctx ends.
func (t *shipTracker) room(ctx context.Context) error {
	for {
		t.mu.Lock()
		n := t.nPending
		t.mu.Unlock()
		if n+pushBatchFiles <= pushAhead {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.shipped:
		}
	}
}

func (t *shipTracker) spooledAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.all = true
	t.check()
}

// done counts files as shipped; the caller holds t.mu.
func (t *shipTracker) done(files []pushFile) {
	for _, f := range files {
		t.nShipped++
		t.bar.add(f.size)
	}
}

// check closes allDone once every file is committed and shipped; the
// caller holds t.mu.
func (t *shipTracker) check() {
	if t.all && len(t.pending) == 0 && !t.closed {
		close(t.allDone)
		t.closed = true
	}
}

func (t *shipTracker) shippedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nShipped
}

// failedOnes returns an error naming the first of our entries that moved to
// the failed queue, with the reason the store gave.
func (p *pusher) failedOnes(sp *spool.Spool, t *shipTracker) error {
	failed, err := sp.Failed()
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, fe := range failed {
		files, ok := t.pending[fe.ID]
		switch {
		case !ok:
		case len(files) == 1:
			return fmt.Errorf("upload of %s to %s failed for good (kept in the spool's failed queue): %s", files[0].path, p.url, fe.Reason)
		default:
			return fmt.Errorf("upload of %d small files spooled together, from %s on, to %s failed for good (kept in the spool's failed queue): %s", len(files), files[0].path, p.url, fe.Reason)
		}
	}
	return nil
}

// handOff gives the files to the daemon that owns the spool. With wait it
// then watches the replica until each file is there with the right
// checksum: the daemon's confirmation, observed where it matters.
func (p *pusher) handOff(ctx context.Context, pid int, wait bool) error {
	sums := make(map[string]string, len(p.files))
	var (
		batch []spool.HandoffFile
		files int // in batch and bun
		bytes int64
		given int // files handed over
		bun   uploader.Bundle
	)
	// bundled adds the bundle being filled, if any, to batch.
	bundled := func() {
		if bun.Len() == 0 {
			return
		}
		job, data := bun.Job([]string{p.url}, p.sealed)
		batch = append(batch, spool.HandoffFile{Data: data, Payload: job})
	}
	handOver := func() error {
		bundled()
		n, err := spool.HandoffFiles(p.dir, uploader.FilesQueue, batch)
		for _, h := range batch[:n] {
			if job := h.Payload.(uploader.Job); len(job.Files) > 0 {
				given += len(job.Files)
			} else {
				given++
			}
		}
		batch, files, bytes = batch[:0], 0, 0
		if err != nil {
			return fmt.Errorf("%w (%d file(s) handed over before it stay with the daemon)", err, given)
		}
		return nil
	}
	for _, f := range p.files {
		alone := f.size > uploader.BundleFileMax
		if !alone {
			if int64(bun.Size())+f.size > uploader.MaxBundleBytes {
				bundled()
			}
			_, err := bun.Add(f.path, f.key)
			if alone = errors.Is(err, uploader.ErrTooLarge); !alone && err != nil {
				return fmt.Errorf("hand %s to the daemon: %w (%d file(s) handed over before it stay with the daemon)", f.path, err, given)
			}
			if !alone && wait {
				sums[f.key] = bun.Sum()
			}
		}
		if alone {
			if wait {
				sum, err := fileSHA256(f.path)
				if err != nil {
					return err
				}
				sums[f.key] = sum
			}
			batch = append(batch, spool.HandoffFile{Src: f.path, Payload: p.job(f)})
		}
		files++
		bytes += f.size
		if files >= pushBatchFiles || bytes >= pushBatchBytes {
			if err := handOver(); err != nil {
				return err
			}
		}
	}
	if err := handOver(); err != nil {
		return err
	}
	if !wait {
		fmt.Fprintf(p.stderr, "ferry push: handed %d file(s) to the ferry daemon (pid %d) on %s\n", len(p.files), pid, p.dir)
		return nil
	}
	var total int64
	for _, f := range p.files {
		total += f.size
	}
	bar := newProgress(p.stderr, total, "uploading")
	pending := slices.Clone(p.files)
	prefix := keysDir(pending)
	listing := len(pending) > listFrom
	for len(pending) > 0 {
		var sizes map[string]int64
		if listing {
			sizes, listing = p.listed(ctx, prefix, pending)
		}
		next := pending[:0]
		for _, f := range pending {
			if sizes != nil {
				if size, ok := sizes[f.key]; !ok || size != f.size {
					next = append(next, f) // not there yet: no need to ask
					continue
				}
			}
			info, err := p.store.Head(ctx, f.key)
			switch {
			case err == nil && info.SHA256 == sums[f.key] && info.Size == f.size:
				bar.add(f.size)
			case err == nil || objstore.IsNotFound(err):
				next = append(next, f)
			default:
				return fmt.Errorf("check %s in %s: %w", f.key, p.url, err)
			}
		}
		pending = next
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d file(s) not yet in %s (the daemon keeps shipping them): %w", len(pending), p.url, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	bar.finish()
	fmt.Fprintf(p.stderr, "ferry push: %d file(s) durable in %s\n", len(p.files), p.url)
	return nil
}

// listFrom is the number of files still awaited from which a push
// waiting on a daemon lists the replica to see which have arrived, rather
// than asking after each one: a round of HEADs costs a request per file
// still awaited, and the daemon ships them while being asked.
const listFrom = 64

// listed lists the replica under prefix and returns the size of each
// object that is one of pending, so that only those are checked with a
// HEAD. It gives up listing (ok false) if the listing fails (a key may
// allow PUT and HEAD but not List) or holds many more objects than are
// awaited: then a HEAD per file costs less than the listing.
func (p *pusher) listed(ctx context.Context, prefix string, pending []pushFile) (sizes map[string]int64, ok bool) {
	want := make(map[string]bool, len(pending))
	for _, f := range pending {
		want[f.key] = true
	}
	sizes = map[string]int64{}
	seen, most := 0, 4*len(pending)+1000
	for info, err := range p.store.List(ctx, prefix) {
		if err != nil {
			return nil, false
		}
		if seen++; seen > most {
			return nil, false
		}
		if want[info.Key] {
			sizes[info.Key] = info.Size
		}
	}
	return sizes, true
}

// keysDir is the longest common prefix of the files' keys that ends in a
// slash, or "".
func keysDir(files []pushFile) string {
	if len(files) == 0 {
		return ""
	}
	prefix := files[0].key
	for _, f := range files[1:] {
		n := 0
		for n < len(prefix) && n < len(f.key) && prefix[n] == f.key[n] {
			n++
		}
		prefix = prefix[:n]
	}
	return prefix[:strings.LastIndexByte(prefix, '/')+1]
}

// job is the spool entry's payload for f.
func (p *pusher) job(f pushFile) uploader.Job {
	return uploader.Job{Key: f.key, Pending: []string{p.url}, Sealed: p.sealed}
}

// sealFiles encrypts each file for its key into dir, and returns the
// files to push in their place and what removes them. The spool then
// holds only ciphertext, and whichever process ships it (this one, or a
// daemon that has no key) stores it as it is.
func sealFiles(ring *seal.Ring, files []pushFile, dir string) ([]pushFile, func(), error) {
	var made []string
	cleanup := func() {
		for _, p := range made {
			os.Remove(p)
		}
	}
	out := make([]pushFile, len(files))
	for i, f := range files {
		tmp, err := os.CreateTemp(dir, ".ferry-push-sealed-*")
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("encrypt %s: %w", f.path, err)
		}
		made = append(made, tmp.Name())
		err = sealOne(ring, f, tmp)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("encrypt %s: %w", f.path, err)
		}
		fi, err := os.Stat(tmp.Name())
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		out[i] = pushFile{path: tmp.Name(), key: f.key, size: fi.Size()}
	}
	return out, cleanup, nil
}

func sealOne(ring *seal.Ring, f pushFile, dst *os.File) error {
	src, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer src.Close()
	return seal.Encrypt(ring, f.key, dst, src)
}
