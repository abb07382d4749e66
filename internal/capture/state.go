package capture

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ferrydb/ferry/internal/wal"
)

// stateName is the capture state's file in the spool directory, beside the
// spool's own directories.
const stateName = "capture.json"

const stateVersion = 1

// savedState is what survives a restart. Two rules keep a crash at any
// instruction harmless:
//
//   - TXID and Pos name the end of the last change set that reached the
//     spool (or the txid a snapshot alone carries). A restart reads the log
//     again from Pos and numbers what follows from TXID+1. Committed frames
//     never change within a log generation, so the transactions that follow
//     are the same ones, with the same pages, that got those txids before
//     the crash: a change set captured twice is the same change set.
//   - Reserved is saved before any txid above it reaches the spool or a
//     store. When the log no longer continues from Pos, the next txid is
//     Reserved+1, so a txid is never given to two different states.
type savedState struct {
	Version int    `json:"version"`
	DB      string `json:"db"`

	TXID uint64    `json:"txid"`
	Time time.Time `json:"time"`
	// Pos is nil when ferry was waiting for a new log generation, which
	// cannot be resumed after a restart.
	Pos      *wal.Position `json:"pos,omitempty"`
	PageSize int           `json:"page_size"`
	DBSize   uint32        `json:"db_size"`
	Reserved uint64        `json:"reserved"`

	// Writer is the id this replicator names itself by in the objects it
	// writes (see writerID), kept so that it knows them after a restart.
	Writer string `json:"writer,omitempty"`

	Targets map[string]*savedTarget `json:"targets"`
	Gaps    []Gap                   `json:"gaps,omitempty"`

	// Quiet is set when the state was saved on going idle (see
	// quietMark): every target then held every transaction, and the
	// database file was as Quiet records it.
	Quiet *quietMark `json:"quiet,omitempty"`
	Idle  *Idle      `json:"idle,omitempty"`
}

// savedTarget is what ferry knows about one target.
type savedTarget struct {
	// Snapshot is the txid of the newest snapshot ferry completed there.
	Snapshot     uint64    `json:"snapshot"`
	SnapshotTime time.Time `json:"snapshot_time,omitzero"`
	// Synced says that change sets reach the target from Snapshot on.
	Synced bool `json:"synced"`
	// Replicated is how far the target was known to restore, and
	// WaitingSince when the oldest txid it lacked was committed, so that
	// its lag stays true across a restart.
	Replicated   uint64    `json:"replicated"`
	WaitingSince time.Time `json:"waiting_since,omitzero"`
	// UnsyncedFrom is the first txid the target misses while it waits for
	// a snapshot; the gap is recorded when the snapshot lands.
	UnsyncedFrom  uint64 `json:"unsynced_from,omitempty"`
	UnsyncedCause string `json:"unsynced_cause,omitempty"`
	// HoldAfter is the txid of a snapshot meant to start the target's
	// chain again that was not stored yet: change sets after it, spooled
	// before a restart, still wait for it.
	HoldAfter uint64 `json:"hold_after,omitempty"`
	// BreakAfter is where the target's chain of change sets ended at a
	// break whose marker is not spooled yet.
	BreakAfter uint64 `json:"break_after,omitempty"`
	// Full makes the next snapshot reread every chunk; otherwise Dirty
	// lists the chunks written since Snapshot.
	Full  bool  `json:"full,omitempty"`
	Dirty []int `json:"dirty,omitempty"`
}

// maxGaps bounds the gaps kept in the state and reported by Status.
const maxGaps = 100

func statePath(spoolDir string) string { return filepath.Join(spoolDir, stateName) }

// loadState reads the state in spoolDir; it returns nil, nil when there is
// none.
func loadState(spoolDir, db string) (*savedState, error) {
	p := statePath(spoolDir)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read capture state: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("capture state %s is damaged (%v); move it away to start the replica's numbering from what the targets hold", p, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("capture state %s has version %d; this ferry reads version %d", p, st.Version, stateVersion)
	}
	if st.DB != db {
		return nil, fmt.Errorf("spool %s holds the capture state of %s, not %s; give each database its own spool", spoolDir, st.DB, db)
	}
	if st.Reserved < st.TXID {
		st.Reserved = st.TXID
	}
	if st.Targets == nil {
		st.Targets = map[string]*savedTarget{}
	}
	return &st, nil
}

// saveState writes st atomically and durably: a temporary file, fsynced,
// renamed over the old one, and the directory fsynced, so that a crash
// leaves either the old state or the new one.
func saveState(spoolDir string, st *savedState) error {
	st.Version = stateVersion
	if len(st.Gaps) > maxGaps {
		st.Gaps = slices.Clone(st.Gaps[len(st.Gaps)-maxGaps:])
	}
	b, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return err
	}
	p := statePath(spoolDir)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save capture state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil {
		err = syncDir(spoolDir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save capture state %s: %w", p, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
