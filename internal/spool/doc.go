// Package spool is ferry's durable local outbox: every byte that ferry
// promises to upload sits here, fsynced, until an uploader reports it done.
//
// The semantics follow Jane Street's multispool. An entry is built in tmp/
// and fsynced, then renamed into a queue directory; a worker claims it by
// renaming it into the queue's checkout/ directory, and finishes it by
// removing it or moving it to another queue. Because a rename is atomic, an
// entry is in exactly one place at any instant, and a crash at any
// instruction leaves every entry either where it was or where it was going.
//
// Layout of a spool directory DIR (everything owner-only, 0700/0600):
//
//	DIR/LOCK                          flock held by the owning process; holds its pid
//	DIR/tmp/                          entries being built or deleted; emptied on Open
//	DIR/q/<queue>/<id>/data           a ready entry's bytes
//	DIR/q/<queue>/<id>/meta.json      its attempts, next try, last error, payload
//	DIR/q/<queue>/checkout/<id>/      an entry claimed by a worker
//	DIR/q/failed/<id>/                an entry that failed permanently, with its reason
//	DIR/spare/<id>/                   a finished small entry's directory, kept for a new
//	                                  entry to be built in (as in tmp/); Open keeps the
//	                                  whole ones and removes the rest
//
// Other names directly under DIR (a control socket, state files) belong to
// the rest of ferry and are left alone.
//
// What the package promises:
//
//   - An entry is visible in a queue only once its data and meta are fully
//     written and fsynced; Enqueue returns only after the rename into the
//     queue is fsynced. A Batch does the same for many entries at once:
//     one syncfs (or fsyncs side by side) for all of them, then their
//     renames and one fsync of the queue's directory; its entries are
//     acknowledged when Commit returns, and a crash before then leaves any
//     subset of them queued, each whole.
//   - Concurrent operations that rename through the same directory share
//     its fsyncs (group commit), and each still returns only after a fsync
//     that began after its own rename.
//   - Done, Fail, FailPermanently and MoveTo are durable when they return.
//     A crash in the middle leaves the entry where it was (it is retried:
//     at-least-once) or where it was going, never half of it.
//   - Entries claimed by a process that died are handed out again by the
//     next Open.
//   - IDs sort in creation order, and Claim hands out the oldest ready entry,
//     so a queue is FIFO; a queue named in Options.Ordered is strictly FIFO,
//     one entry at a time.
//   - The spool never holds more than Options.MaxBytes of entry data.
//
// Check inspects a spool read-only, without its lock, while a daemon runs,
// and Monitor turns repeated Checks into logs and metrics.
package spool
