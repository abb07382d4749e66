package capture

import "time"

// RewriteChunks makes the next snapshot to url reread every chunk of the
// database and store each one the target lacks, and takes that snapshot
// soon: a scrub found chunks missing or damaged there. A chunk the live
// database still holds is stored again under the same address, which
// mends every manifest that names it.
func (r *Replicator) RewriteChunks(url string) {
	r.ask(func() {
		t := r.targets[url]
		if t == nil {
			return
		}
		r.o.Log.Warn("chunks lost in the store; the next snapshot rereads and stores every chunk", "target", url)
		t.full, t.prev, t.nextTry = true, nil, time.Time{}
		clear(t.dirty)
		t.forced = true
	})
}

// LostChangeSet records that url no longer holds the change set for
// first..last: those txids are a gap, and when the target's live chain ran
// through them (they come after its newest snapshot) a snapshot starts the
// chain again.
func (r *Replicator) LostChangeSet(url string, first, last uint64, why string) {
	r.ask(func() {
		t := r.targets[url]
		if t == nil {
			return
		}
		if last <= t.base {
			r.gap(url, first, last, why)
			return
		}
		r.o.Log.Warn("a change set was lost in the store; a snapshot will start the target's chain again", "target", url, "first_txid", first, "last_txid", last, "why", why)
		r.unsync(t, min(first, r.progress.replicated(url)+1), why)
		t.nextTry = time.Time{}
		if err := r.save(); err != nil {
			r.fail(err)
		}
	})
}

// ask runs f on the capture loop, unless the Replicator has stopped.
func (r *Replicator) ask(f func()) {
	select {
	case r.repairs <- f:
	case <-r.done:
	}
}
