// Package objstore is ferry's only way to talk to object storage. It owns the
// Store interface that every backend (file, s3, mem) implements, the typed
// errors callers branch on, and the wrappers (retry, timeout, rate limit,
// metrics) that every later part of ferry stacks on top of a backend.
//
// The promise: a backend that passes the conformance suite in storetest
// behaves the same as every other one, so code above this package never
// needs to know which store it is writing to.
package objstore

import (
	"context"
	"io"
	"iter"
	"time"
)

// Store is a flat namespace of immutable-once-written objects addressed by
// key. Keys use '/' as a separator; backends map them to their own layout.
type Store interface {
	// Put writes body under key. The body is a ReadSeeker so that the store
	// can hash it before sending and rewind it to retry; Put reads it from
	// its current offset to EOF. Conditions in opts make the write fail with
	// an error matching ErrPreconditionFailed when they do not hold.
	Put(ctx context.Context, key string, body io.ReadSeeker, opts PutOptions) (Info, error)

	// Get streams an object. With a nil rng it returns the whole object and
	// the reader checks the content against the checksum recorded at Put,
	// failing with ErrCorrupt at EOF on a mismatch. A missing key fails
	// with an error matching ErrNotFound.
	Get(ctx context.Context, key string, rng *Range) (io.ReadCloser, Info, error)

	// Head returns an object's size, etag and user metadata.
	Head(ctx context.Context, key string) (Info, error)

	// List yields every object whose key starts with prefix, in ascending
	// key order, one page at a time underneath so that a listing of any
	// size runs in constant memory. Iteration stops at the first error.
	List(ctx context.Context, prefix string) iter.Seq2[Info, error]

	// Delete removes keys. Deleting a missing key is not an error, as on S3.
	Delete(ctx context.Context, keys ...string) error
}

// PutOptions are the optional parts of a Put.
type PutOptions struct {
	// IfNoneMatch makes the Put create-only: it fails if key exists.
	IfNoneMatch bool
	// IfMatch makes the Put a compare-and-swap: it fails unless the current
	// object's etag equals IfMatch.
	IfMatch string
	// Metadata is stored with the object and returned by Head and Get.
	// Keys are lower-case ASCII; backends may fold case.
	Metadata map[string]string
	// SHA256 is the hex SHA-256 of the body when the caller already knows
	// it, which spares the store a pass over the body.
	SHA256 string
}

// Range selects bytes [Offset, Offset+Length) of an object. A Length of -1
// means "to the end".
type Range struct {
	Offset int64
	Length int64
}

// Info describes a stored object.
type Info struct {
	Key      string
	Size     int64
	ETag     string
	Modified time.Time
	// SHA256 is the hex SHA-256 recorded at Put, when the backend has it.
	SHA256   string
	Metadata map[string]string
}
