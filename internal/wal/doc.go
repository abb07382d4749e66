// Package wal reads SQLite's write-ahead log (the "-wal" file beside a
// database in WAL mode) and yields the transactions SQLite has committed,
// in commit order, each verified by the log's own salts and cumulative
// checksums.
//
// The package owns three promises:
//
//   - It yields committed transactions only. A frame counts when its salts
//     equal the header's, its page number is non-zero and its checksum
//     matches the running value; a transaction counts when such a chain of
//     frames ends in a commit frame. Frames after the last commit (a
//     transaction still being written, one that was rolled back, or
//     leftovers of an older log generation) are never yielded. This is the
//     rule SQLite itself applies when it recovers a log, so a reader of this
//     package and SQLite agree on which transactions exist.
//   - It resumes without rereading. A [Position] is a small value holding
//     the offset after the last yielded commit together with the running
//     checksum at that point; [Resume] continues from it and reads only the
//     frames written since.
//   - It says when it cannot continue. If the log was restarted or reset by
//     a checkpoint, truncated, replaced, or recreated with another page size,
//     the frames between a Position and the current log are gone from the
//     log, and [Reader.Next] and [Resume] return a [*BreakError] (matching
//     [ErrContinuity]). The caller answers that with a snapshot, never by
//     guessing.
//
// A transaction is returned as a list of [PageRef] values, one per page,
// and, when its frames fit in the Reader's buffer (a few MiB), the page
// bytes as the scan read and verified them ([Txn.Data]), so that each page
// is read once. A larger transaction may be larger than memory: its page
// bytes are read with [Reader.ReadPage], which checks the frame again so
// that bytes read after SQLite reused that part of the file are refused
// rather than returned. ReadPage is also how a page is read later, from a
// PageRef kept after the scan.
//
// # Costs and quirks
//
// Each call to Next rereads the frames of a transaction still being written,
// from its first frame, until its commit lands: positions only ever point
// after a commit. Reads go through the page cache in runs of 256 KiB; the
// check of the frame before a position and the first run are one read.
//
// A connection that opened the database with psow=0 (no powersafe
// overwrite) and synchronous=FULL pads the log to a sector boundary at each
// commit by writing the commit frame again, up to a few times. SQLite counts
// each copy as a commit, and so does this package: each arrives as a
// one-page transaction repeating the last page, which changes nothing.
//
// # The lock page
//
// The database page that holds byte offset 1 GiB (page [LockPage]) is never
// written by SQLite: the file-locking byte range lives there. It never
// appears in a log SQLite wrote, and this package treats a frame for it as
// corruption. Code that builds snapshots or restores must not invent it:
// leave that page as whatever the file holds (zeros in a fresh file).
package wal
