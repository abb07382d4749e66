package follow

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/internal/durable"
)

// mark is what the follower records beside its database, in
// DB_PATH-ferry-follow, after each commit: the txid the database holds,
// and what it must match to be trusted.
//
// Why a file beside the database and not a row in it: the follower's
// database must stay equal to the source's content (contract §7 keeps
// ferry's rows out of a database), and no header field of page 1 is free
// to hold a txid (the pager rewrites the change counter and its
// companions at every commit). An attached database would not commit
// atomically with the main one in WAL mode either.
//
// Why that is crash-safe: the order is COMMIT (fsynced: synchronous=FULL),
// then the mark, written to a temporary file, fsynced and renamed over
// the old one, so the mark is always whole, and never ahead of the
// database. A crash between the two leaves the database one transaction
// past its mark, at txid N with a mark saying N-1. The restart applies
// txid N again, over the state that already holds it, and that is a no-op
// that readers cannot see: txid N writes the same image into every page
// it wrote before, and those images are what those pages hold in state N;
// every other page is untouched, and the size set is N's size again. The
// mark is never more than one transaction behind, which matters: applying
// N-1 over state N would not be a no-op, and would show readers a state
// that mixes the two. A restore anew removes the mark (durably) before it
// commits, so a crash there leaves no mark, and the next start restores
// anew rather than trust an old one.
type mark struct {
	Version  int       `json:"version"`
	Replica  string    `json:"replica"`
	TXID     uint64    `json:"txid"`
	Time     time.Time `json:"time"` // commit time of TXID at the source
	PageSize int       `json:"page_size"`
}

const markVersion = 1

func markPath(dbPath string) string { return dbPath + "-ferry-follow" }

// readMark returns the mark of the database at dbPath; an error matching
// os.ErrNotExist when there is none.
func readMark(dbPath string) (mark, error) {
	b, err := os.ReadFile(markPath(dbPath))
	if err != nil {
		return mark{}, err
	}
	var m mark
	if err := json.Unmarshal(b, &m); err != nil {
		return mark{}, fmt.Errorf("%s is damaged: %w", markPath(dbPath), err)
	}
	if m.Version != markVersion {
		return mark{}, fmt.Errorf("%s has version %d, this ferry writes %d", markPath(dbPath), m.Version, markVersion)
	}
	if m.TXID == 0 || m.PageSize == 0 {
		return mark{}, fmt.Errorf("%s records txid %d, page size %d", markPath(dbPath), m.TXID, m.PageSize)
	}
	return m, nil
}

// writeMark records m for the database at dbPath, atomically and durably.
func writeMark(dbPath string, m mark) error {
	m.Version = markVersion
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	path := markPath(dbPath)
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("record txid %d: %w", m.TXID, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("record txid %d in %s: %w", m.TXID, path, err)
	}
	return durable.SyncDir(dir)
}

// removeMark removes the mark of the database at dbPath, durably.
func removeMark(dbPath string) error {
	err := os.Remove(markPath(dbPath))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", markPath(dbPath), err)
	}
	return durable.SyncDir(filepath.Dir(dbPath))
}
