package capture

import (
	"slices"
	"time"
)

// Gap is a run of txids that a target cannot restore: their change sets
// were dropped from a full spool or refused by the store for good, or the
// log broke continuity while the target could not take the snapshot that
// carries on from there.
type Gap struct {
	Target string    `json:"target"`
	First  uint64    `json:"first_txid"`
	Last   uint64    `json:"last_txid"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
	// Open marks a gap still growing: the target restores nothing past
	// First-1 until a snapshot reaches it, and Last is the newest txid
	// captured so far.
	Open bool `json:"open,omitempty"`
}

// Status is a Replicator's state as Status reports it.
type Status struct {
	DB string `json:"db"`
	// TXID is the newest transaction captured, and Time when ferry saw it
	// commit.
	TXID    uint64         `json:"txid"`
	Time    time.Time      `json:"time,omitzero"`
	Targets []TargetStatus `json:"targets"`
	// SpoolBytes and SpoolSegments are the change sets waiting for upload.
	SpoolBytes    int64 `json:"spool_bytes"`
	SpoolSegments int   `json:"spool_segments"`
	Gaps          []Gap `json:"gaps,omitempty"`
	// LastError is the newest failure of the capture itself (reading the
	// log, writing the spool), LastErrorTime when it happened and Errors
	// how many there were since start.
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
	Errors        int64     `json:"errors"`
}

// TargetStatus is one target's part of a Status.
type TargetStatus struct {
	URL string `json:"url"`
	// Replicated is the newest txid the target restores, with every txid
	// from Snapshot to it: a restore from the target returns it.
	Replicated uint64 `json:"replicated_txid"`
	// Snapshot is the newest snapshot ferry completed there.
	Snapshot uint64 `json:"snapshot_txid"`
	// Synced is false while the target waits for a snapshot before change
	// sets are of use to it again.
	Synced bool `json:"synced"`
	// Lag is the age of the oldest captured commit the target does not
	// hold yet (zero when it holds them all), and WaitingSince when that
	// commit happened.
	Lag          time.Duration `json:"-"`
	LagSeconds   float64       `json:"lag_seconds"`
	WaitingSince time.Time     `json:"waiting_since,omitzero"`
	// LastError is the newest failure of the target, kept after it
	// recovers; FailingSince is when the current run of failures began,
	// zero while its store answers.
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
	FailingSince  time.Time `json:"failing_since,omitzero"`
	// Stopped says that the target stopped replicating for good, for the
	// reason in LastError: another writer shares its replica.
	Stopped bool `json:"stopped,omitempty"`
}

// Status reports what the Replicator has captured and what each target
// restores. It is safe to call at any time, from any goroutine.
func (r *Replicator) Status() Status {
	p := r.progress
	now := time.Now()
	p.mu.Lock()
	s := Status{DB: r.o.DBPath, TXID: p.local, Time: p.at, Gaps: slices.Clone(p.gaps),
		LastError: p.lastErr, LastErrorTime: p.errAt, Errors: p.errors}
	for _, u := range r.urls {
		t := p.targets[u]
		s.Targets = append(s.Targets, t.status(p.local, &p.marks, now))
		if t.unsyncedFrom > 0 && t.unsyncedFrom <= p.local {
			s.Gaps = append(s.Gaps, Gap{Target: u, First: t.unsyncedFrom, Last: p.local, Reason: t.unsyncedCause, Open: true})
		}
	}
	p.mu.Unlock()
	s.SpoolBytes = r.sp.Bytes()
	for _, q := range r.queues {
		s.SpoolSegments += r.sp.Len(q)
	}
	return s
}
