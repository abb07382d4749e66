package segment

import (
	"errors"
	"fmt"

	"github.com/ferrydb/ferry/internal/objstore"
)

// ErrVersion means a segment's header names a format version or flags this
// build cannot read. The error names the version it found.
var ErrVersion = errors.New("unsupported segment format")

// CorruptError reports a segment that is damaged or inconsistent: wrong
// magic, bad checksums, a truncated body, txids that are not consecutive,
// a page number outside the database. It matches objstore.ErrCorrupt.
type CorruptError struct {
	// Key is the segment's object key, when the caller named it.
	Key string
	// Offset is where the problem was found, counted in the decoded
	// segment: the header, then the decoded body, then the trailer.
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("segment %s: corrupt at offset %d: %s", keyName(e.Key), e.Offset, e.Reason)
}

// Unwrap makes a CorruptError match objstore.ErrCorrupt.
func (e *CorruptError) Unwrap() error { return objstore.ErrCorrupt }

// keyName is how messages name a segment whose key the caller did not give.
func keyName(key string) string {
	if key == "" {
		return "(unnamed)"
	}
	return key
}

func versionError(key string, version, flags uint16) error {
	key = keyName(key)
	if version != Version {
		return fmt.Errorf("segment %s: %w version %d (this ferry reads version %d; a newer ferry wrote it, or its header is damaged)",
			key, ErrVersion, version, Version)
	}
	return fmt.Errorf("segment %s: %w: flags %#x in version %d (a newer ferry wrote it, or its header is damaged)",
		key, ErrVersion, flags, version)
}
