package durable

import "sync"

// Dir fsyncs one directory on behalf of many goroutines, sharing the
// fsyncs between them (group commit): a Sync that arrives while another
// is under way waits for it to end and then joins the next one, which
// covers every caller that arrived in the meantime. N concurrent callers
// cost about two fsyncs rather than N, and each still returns only once a
// fsync that began after its call has succeeded.
//
// A fsync that started before a caller's rename cannot be trusted to
// cover it, which is why a caller never joins the round in progress.
// Each round's error goes to exactly the callers it covered: after a
// failed fsync, Linux may report a later one as clean without having
// written what the failed one lost, so a caller must not take a later
// round's success for its own.
type Dir struct {
	path string

	mu      sync.Mutex
	cond    sync.Cond
	running bool
	next    *round // not yet started; nil when nobody waits for one
}

type round struct {
	done bool
	err  error
}

// NewDir returns a Dir for the directory at path.
func NewDir(path string) *Dir {
	d := &Dir{path: path}
	d.cond.L = &d.mu
	return d
}

// Sync returns once a fsync of the directory that began after Sync was
// called has finished, with that fsync's error.
func (d *Dir) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.next == nil {
		d.next = &round{}
	}
	r := d.next
	for d.running && !r.done {
		d.cond.Wait()
	}
	if r.done {
		return r.err
	}
	// Nobody is syncing and our round has not started: we run it for
	// everyone in it. Later callers form the round after it.
	d.running, d.next = true, nil
	d.mu.Unlock()
	err := SyncDir(d.path)
	d.mu.Lock()
	r.done, r.err, d.running = true, err, false
	d.cond.Broadcast()
	return err
}
