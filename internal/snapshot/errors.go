package snapshot

import (
	"errors"
	"fmt"

	"github.com/ferrydb/ferry/internal/objstore"
)

// ErrVersion means a manifest uses a format version, address scheme or
// chunk encoding this build cannot read.
var ErrVersion = errors.New("unsupported snapshot format")

// ManifestError reports a manifest that is damaged or inconsistent. It
// matches objstore.ErrCorrupt.
type ManifestError struct {
	Key    string // the manifest's object key, when known
	Reason string
}

func (e *ManifestError) Error() string {
	key := e.Key
	if key == "" {
		key = "(unnamed)"
	}
	return fmt.Sprintf("snapshot manifest %s: corrupt: %s", key, e.Reason)
}

// Unwrap makes a ManifestError match objstore.ErrCorrupt.
func (e *ManifestError) Unwrap() error { return objstore.ErrCorrupt }

// ChunkError reports a chunk a snapshot names that is missing, damaged or
// unreadable. Err says which: it matches objstore.ErrNotFound for a
// missing chunk and objstore.ErrCorrupt for a damaged one.
type ChunkError struct {
	Key   string // the chunk's object key
	Index int    // the first chunk of the image that has this address
	Err   error
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("chunk %d (%s): %v", e.Index, e.Key, e.Err)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// corruptChunk returns a *ChunkError matching objstore.ErrCorrupt.
func corruptChunk(key string, index int, format string, args ...any) error {
	return &ChunkError{Key: key, Index: index, Err: fmt.Errorf("%w: %s", objstore.ErrCorrupt, fmt.Sprintf(format, args...))}
}
