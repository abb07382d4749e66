package spool

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrydb/ferry/internal/durable"
)

const metaVersion = 1

// meta is an entry's meta.json: everything about an entry except its bytes.
// It is rewritten whole (tmp file, fsync, rename, fsync of the entry dir)
// whenever it changes, so a reader sees the old or the new version, never a
// torn one.
type meta struct {
	Version   int             `json:"version"`
	Created   time.Time       `json:"created"`
	Size      int64           `json:"size"`
	Attempts  int             `json:"attempts,omitempty"`
	NextTry   time.Time       `json:"next_try,omitzero"`
	LastError string          `json:"last_error,omitempty"`
	FailedAt  time.Time       `json:"failed_at,omitzero"`
	From      string          `json:"failed_from,omitempty"` // queue it failed in, set in the failed queue
	Payload   json.RawMessage `json:"payload,omitempty"`
}

func marshalPayload(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return nil, fmt.Errorf("payload is not valid JSON")
		}
		return raw, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	return b, nil
}

func (m *meta) encode() ([]byte, error) {
	m.Version = metaVersion
	return json.Marshal(m)
}

// parseMeta decodes meta.json, refusing what this version cannot read.
func parseMeta(b []byte) (meta, error) {
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return meta{}, fmt.Errorf("unparsable meta.json: %w", err)
	}
	if m.Version != metaVersion {
		return meta{}, fmt.Errorf("meta.json has version %d; this ferry reads version %d", m.Version, metaVersion)
	}
	if m.Size < 0 || m.Attempts < 0 {
		return meta{}, fmt.Errorf("meta.json has negative size or attempts")
	}
	return m, nil
}

func readMeta(entryDir string) (meta, error) {
	b, err := os.ReadFile(filepath.Join(entryDir, metaName))
	if err != nil {
		return meta{}, err
	}
	return parseMeta(b)
}

// writeMeta replaces entryDir/meta.json atomically and durably.
func writeMeta(entryDir string, m *meta) error {
	b, err := m.encode()
	if err != nil {
		return err
	}
	tmp := filepath.Join(entryDir, metaTmpName)
	if err := writeFileSync(tmp, b); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(entryDir, metaName)); err != nil {
		os.Remove(tmp)
		return err
	}
	return durable.SyncDir(entryDir)
}
