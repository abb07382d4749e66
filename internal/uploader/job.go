package uploader

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ferrydb/ferry/internal/spool"
)

// Job is the payload of a spool entry that carries a file to the store: the
// key it goes to and the targets still waiting for it. A target leaves
// Pending, durably, as soon as it confirms the upload, so a restart
// resumes with the targets that had not.
type Job struct {
	// Key is where the entry's data goes; empty in a bundle.
	Key string `json:"key,omitempty"`
	// Pending lists the replica URLs that do not hold the file yet.
	Pending []string `json:"pending"`
	// SHA256 is the hex SHA-256 of the data, recorded by the first worker
	// that hashed it so later attempts skip the pass.
	SHA256 string `json:"sha256,omitempty"`
	// Sealed says the data was encrypted for its key before it was
	// spooled (package seal): it is stored as it is, whatever keys the
	// shipping process has, so that a daemon without the key can ship it
	// and never sends it in the clear.
	Sealed bool `json:"sealed,omitempty"`
	// Last is, for a change set, its last txid, which a key naming only
	// the first does not say. The uploader only hands it back to
	// Options.Shipped.
	Last uint64 `json:"last_txid,omitempty"`
	// Files makes the entry a bundle: its data is these files' bytes one
	// after the other, in this order, each going to its own key. Many
	// small files spooled as one entry cost the spool one entry's
	// directory, files and renames rather than one each.
	Files []BundledFile `json:"files,omitempty"`
}

// BundledFile is one file of a bundle.
type BundledFile struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
	// SHA256 is the hex SHA-256 of the file's bytes.
	SHA256 string `json:"sha256"`
}

// Parts returns the bytes of each file of the bundle j, whose data is
// data, in the order of j.Files; an error if their sizes do not add up
// to data.
func (j Job) Parts(data []byte) ([][]byte, error) {
	parts := make([][]byte, len(j.Files))
	rest := data
	for i, f := range j.Files {
		if f.Size < 0 || f.Size > int64(len(rest)) {
			return nil, fmt.Errorf("bundled file %s of %d bytes: the bundle's %d bytes hold %d more", f.Key, f.Size, len(data), len(rest))
		}
		parts[i], rest = rest[:f.Size], rest[f.Size:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("the bundle's files add up to %d bytes, its data is %d", len(data)-len(rest), len(data))
	}
	return parts, nil
}

// MaxBundleBytes is the most data a bundle may hold: a worker reads a
// bundle whole into memory to send its files.
const MaxBundleBytes = 4 << 20

// FilesQueue is the spool queue that plain files travel through.
const FilesQueue = "files"

// FilesDoneDelay is the Options.DoneDelay for FilesQueue, whose entries
// are independent of each other: an entry shipped waits up to 20 ms to
// be removed from the spool with the others shipped meanwhile, about one
// fsync per 20 ms rather than one or two per file. Nothing waits for the
// removal but the spool's space.
const FilesDoneDelay = 20 * time.Millisecond

// CheckKey rejects object keys that no store can hold the same way: empty
// ones, absolute ones, and ones whose segments are empty or dot-dot.
func CheckKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || path.Clean(key) != key {
		return fmt.Errorf("object key %q is not a clean relative path", key)
	}
	if slices.Contains(strings.Split(key, "/"), "..") {
		return fmt.Errorf("object key %q leaves its prefix", key)
	}
	return nil
}

// EnqueueFile hands the file at src to the spool for upload under key to
// every target. With move, the file is renamed into the spool (it leaves
// src at once, as files in an inbox should); otherwise it is copied.
func EnqueueFile(sp *spool.Spool, src, key string, targets []string, move bool) (spool.ID, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	if len(targets) == 0 {
		return "", fmt.Errorf("enqueue %s: no target", src)
	}
	return sp.EnqueueFile(FilesQueue, Job{Key: key, Pending: targets}, src, move)
}
