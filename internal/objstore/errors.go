package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// Sentinel errors that callers branch on. Backends wrap them in *Error so the
// message names the operation and key.
var (
	// ErrNotFound means the key does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrPreconditionFailed means an IfNoneMatch or IfMatch condition did
	// not hold: the key exists, or its etag moved.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrCorrupt means the bytes read back do not match the size or
	// checksum recorded when the object was written.
	ErrCorrupt = errors.New("object corrupt")
	// ErrKey means an object cannot be read with the keys given: it is
	// encrypted and no key, or another key, was given; or a key was given
	// for an object stored in the clear. It is the reader's mistake, not
	// damage: a restore stops at it rather than planning around the
	// object as it would around a damaged one.
	ErrKey = errors.New("wrong key")
)

// Error is an object-store failure with the operation, key and, for HTTP
// backends, the status code that produced it.
type Error struct {
	Op         string // put, get, head, list, delete
	Key        string
	StatusCode int // 0 when no HTTP response was received
	Err        error
}

func (e *Error) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("%s %s: status %d: %v", e.Op, e.Key, e.StatusCode, e.Err)
	}
	return fmt.Sprintf("%s %s: %v", e.Op, e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsNotFound reports whether err means a missing key.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsPreconditionFailed reports whether err means a failed condition.
func IsPreconditionFailed(err error) bool { return errors.Is(err, ErrPreconditionFailed) }

// Transient reports whether retrying the same call may succeed: server
// errors (5xx), throttling (429), request timeouts (408), network timeouts,
// resets and truncated bodies. Everything else, including every other 4xx,
// a failed condition, a missing key and a cancelled context, is permanent:
// retrying would only hide the mistake from the operator.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrTimeout) {
		// Checked before cancellation: a call cut off by our own timeout
		// also carries the context.Canceled of the context we ended.
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrPreconditionFailed) || errors.Is(err, ErrCorrupt) {
		return false
	}
	var se *Error
	if errors.As(err, &se) && se.StatusCode != 0 {
		switch {
		case se.StatusCode >= 500, se.StatusCode == 408, se.StatusCode == 429:
			return true
		default:
			return false
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe)
}
