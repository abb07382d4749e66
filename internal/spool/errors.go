package spool

import (
	"errors"
	"fmt"
	"time"
)

// Errors that callers branch on.
var (
	// ErrFull means the entry would take the spool past Options.MaxBytes.
	// The error returned is a *FullError saying how full the spool is.
	ErrFull = errors.New("spool is full")
	// ErrEmpty means no entry in the queue is ready to be claimed. The
	// error returned is an *EmptyError saying when one will be.
	ErrEmpty = errors.New("no entry ready")
	// ErrClosed means the Spool was closed.
	ErrClosed = errors.New("spool is closed")
	// ErrNotHeld means the Entry was already finished (Done, Release, Fail,
	// FailPermanently or MoveTo) and is no longer checked out by its holder.
	ErrNotHeld = errors.New("entry is no longer checked out")
	// ErrDropped means DropQueue removed the entry while it was checked out.
	ErrDropped = errors.New("entry was dropped with its queue")
	// ErrInUse means another process holds the spool's lock.
	ErrInUse = errors.New("spool is in use by another ferry process")
)

// FullError reports an enqueue refused because the spool reached its bound.
type FullError struct {
	Dir  string
	Used int64 // bytes of entry data spooled or being written
	Max  int64 // Options.MaxBytes
	Need int64 // bytes the refused entry needed (at least)
}

func (e *FullError) Error() string {
	return fmt.Sprintf("spool %s is full: %s of %s used; an entry of at least %s does not fit "+
		"(let the uploader drain it, drop a backlog, or raise max-spool-bytes)",
		e.Dir, formatBytes(e.Used), formatBytes(e.Max), formatBytes(e.Need))
}

// Is makes errors.Is(err, ErrFull) true.
func (e *FullError) Is(target error) bool { return target == ErrFull }

// EmptyError reports a Claim that found nothing ready.
type EmptyError struct {
	Queue string
	// Next is when the earliest entry waiting out its backoff becomes
	// ready; zero when the queue holds nothing that will become ready by
	// itself (it is empty, or its entries are checked out).
	Next time.Time
}

func (e *EmptyError) Error() string {
	if e.Next.IsZero() {
		return fmt.Sprintf("queue %s: %v", e.Queue, ErrEmpty)
	}
	return fmt.Sprintf("queue %s: %v before %s", e.Queue, ErrEmpty, e.Next.Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrEmpty) true.
func (e *EmptyError) Is(target error) bool { return target == ErrEmpty }

// formatBytes renders n in IEC units with one decimal: "512 B", "1.0 GiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		f /= unit
		if f < unit && f > -unit {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f EiB", f/unit)
}
