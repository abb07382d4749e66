package wal

import (
	"errors"
	"fmt"
)

// Position is a place in the log from which reading can continue: the
// offset of the next frame, the identity of the log generation it belongs
// to, and the running checksum through the frame that ends at Offset.
//
// It is a plain value, meant to be kept between polls or persisted and
// handed to [Resume]. The zero Position is not valid; use [Header.Start] or
// a Position returned by this package.
type Position struct {
	// Offset is the byte offset of the next frame. It is always
	// HeaderSize plus a whole number of frames.
	Offset int64
	// PageSize, Seq, Salt1 and Salt2 are copied from the header of the
	// log generation this position belongs to.
	PageSize     int
	Seq          uint32
	Salt1, Salt2 uint32
	// Sum1 and Sum2 are the cumulative checksum of the frame that ends at
	// Offset, or the header checksum at the first frame.
	Sum1, Sum2 uint32
}

// FrameSize returns the size of one frame, header and page, in the log this
// position belongs to.
func (p Position) FrameSize() int64 {
	return FrameHeaderSize + int64(p.PageSize)
}

// Frames returns the number of frames before Offset: the frame count
// SQLite reports (as "log" frames, e.g. from PRAGMA wal_checkpoint) when the
// log ends exactly at p.
func (p Position) Frames() int64 {
	if !p.valid() {
		return 0
	}
	return (p.Offset - HeaderSize) / p.FrameSize()
}

func (p Position) String() string {
	return fmt.Sprintf("offset %d (frame %d) seq %d salts %08x/%08x", p.Offset, p.Frames(), p.Seq, p.Salt1, p.Salt2)
}

// valid reports whether p could have been produced by this package.
func (p Position) valid() bool {
	return validPageSize(p.PageSize) &&
		p.Offset >= HeaderSize &&
		(p.Offset-HeaderSize)%p.FrameSize() == 0
}

// ErrContinuity is matched (with errors.Is) by every [*BreakError]: the log
// no longer continues from the position the caller holds.
var ErrContinuity = errors.New("wal: continuity broken")

// Break says why a log no longer continues from a position.
type Break int

// The ways a log can stop continuing from a position. They are checked in
// this order, and the first that applies is reported: the position itself;
// the header (BreakTruncated when there is none, BreakHeader when it is
// invalid); page size; sequence; salts; then the frame that ends at the
// position (BreakTruncated when it is missing or cut, BreakOverwritten when
// it differs).
const (
	// BreakPosition: the position itself is malformed (a zero value or
	// corrupted state), so nothing can continue from it.
	BreakPosition Break = iota + 1
	// BreakHeader: the log's first 32 bytes are not a valid header.
	BreakHeader
	// BreakTruncated: the log ends before the position, or is empty.
	BreakTruncated
	// BreakPageSize: the log was recreated with another page size, e.g.
	// after the database left WAL mode, was vacuumed and came back.
	BreakPageSize
	// BreakSeq: the checkpoint sequence changed, so SQLite restarted the
	// log after a checkpoint and is overwriting it from the start.
	BreakSeq
	// BreakSalt: the salts changed, so this is another log generation: a
	// restart, or a log deleted and created again.
	BreakSalt
	// BreakOverwritten: header and length agree, but the last frame before
	// the position is no longer the one that was read, e.g. the database
	// and its log were replaced by copies from elsewhere.
	BreakOverwritten
)

func (b Break) String() string {
	switch b {
	case BreakPosition:
		return "position is malformed"
	case BreakHeader:
		return "log header is invalid"
	case BreakTruncated:
		return "log is shorter than the position"
	case BreakPageSize:
		return "page size changed"
	case BreakSeq:
		return "checkpoint sequence changed"
	case BreakSalt:
		return "salts changed"
	case BreakOverwritten:
		return "frame before the position changed"
	}
	return fmt.Sprintf("break(%d)", int(b))
}

// BreakError reports that the log no longer continues from Pos. Frames
// committed after Pos may have been checkpointed into the database and
// overwritten in the log, so they cannot be recovered from the log: the
// caller must capture the database itself (a snapshot) and start again from
// the current header.
type BreakError struct {
	Reason Break
	// Pos is the position that can no longer be continued.
	Pos Position
	// Header is the header now in the log, when it has a valid one.
	Header Header
	// Err is the underlying cause, if any, such as ErrNoHeader.
	Err error
}

func (e *BreakError) Error() string {
	msg := fmt.Sprintf("wal: continuity broken at %v: %v", e.Pos, e.Reason)
	switch e.Reason {
	case BreakPageSize:
		msg += fmt.Sprintf(" (%d to %d)", e.Pos.PageSize, e.Header.PageSize)
	case BreakSeq:
		msg += fmt.Sprintf(" (%d to %d)", e.Pos.Seq, e.Header.Seq)
	case BreakSalt:
		msg += fmt.Sprintf(" (%08x/%08x to %08x/%08x)", e.Pos.Salt1, e.Pos.Salt2, e.Header.Salt1, e.Header.Salt2)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + "; a new snapshot of the database is needed"
}

// Is makes errors.Is(err, ErrContinuity) true for every BreakError.
func (e *BreakError) Is(target error) bool { return target == ErrContinuity }

func (e *BreakError) Unwrap() error { return e.Err }

// compareHeader returns the reason, if any, why a log with header h cannot
// hold pos.
func compareHeader(h Header, pos Position) Break {
	switch {
	case h.PageSize != pos.PageSize:
		return BreakPageSize
	case h.Seq != pos.Seq:
		return BreakSeq
	case h.Salt1 != pos.Salt1 || h.Salt2 != pos.Salt2:
		return BreakSalt
	}
	return 0
}
