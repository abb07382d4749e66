// Package capture replicates one SQLite database in WAL mode, written by
// any application in any language, into ferry's remote layout: change sets
// (segments) through the durable spool, and content-addressed snapshots
// straight to every target. It owns ferry's transaction numbering (txids)
// and everything that keeps that numbering honest.
//
// What it promises:
//
//   - Every txid names one committed state of the database. A segment
//     carries transactions exactly as SQLite committed them; a snapshot at
//     txid T is the database image after T. When the log stops continuing
//     from what ferry copied, the changes ferry could not see are folded
//     into one new txid that only a snapshot carries, never guessed into a
//     segment.
//   - The application's database is never written: ferry's connections
//     only read and checkpoint, so the content hash of the database is
//     unchanged by replication.
//   - The application is never held up for long: ferry's own checkpoints
//     are PASSIVE. Only when the log has grown past TruncatePages does
//     ferry take SQLite's writer lock, waiting at most a busy timeout of
//     tens of milliseconds, for the few milliseconds a last PASSIVE
//     checkpoint needs, so that the log can restart; against a writer
//     that keeps the lock nearly all the time, once the log is longer
//     still, a RESTART checkpoint takes it, for a few milliseconds more.
//   - These locks, and the read marks below, are POSIX locks of the
//     process: closing any descriptor of the -shm file would drop them
//     all, so ferry never closes a descriptor of that file (nor opens the
//     database file) beside SQLite's own. It opens the -shm file once,
//     for the checkpoint lock below, and keeps it open.
//   - While the application commits, ferry holds SQLite's checkpoint
//     lock (an open file description lock, which the kernel drops if
//     ferry dies), so that the application's automatic checkpoints,
//     which would find little to copy past ferry's read mark, give up at
//     their first lock call instead of costing each commit three; ferry
//     checkpoints instead. It lets the lock go once the application has
//     not committed for a tenth of a second, and whenever the wal-index
//     header is unsettled, so that a connection that must recover the
//     index (after a writer died while updating it) can.
//   - A crash at any instruction loses nothing that was acknowledged and
//     never reuses a txid for different content (see state.go).
//
// # Why holding a read transaction makes the log trustworthy
//
// SQLite can only destroy frames of the log by restarting it (a writer
// that finds every frame checkpointed starts again at the top of the file)
// or by a TRUNCATE checkpoint. Both need every frame already copied into
// the database file and no reader on read-mark slots 1..N. A reader that
// began while the log was fully checkpointed sits on slot 0 instead; it
// lets the log restart but blocks every further copy into the database
// file. So while ferry holds a read transaction that it began before its
// latest complete pass over the log:
//
//   - on slots 1..N, the log cannot restart at all;
//   - on slot 0, it can restart only before any frame is appended after
//     the transaction began, that is only when ferry has already copied
//     the whole log.
//
// Either way no restart can destroy a frame ferry has not copied: a new
// log generation seen while protected continues the old one, whatever its
// salts (a connection that never restarted the log itself writes random
// ones). ferry refreshes its read transaction hand over hand, on two
// connections, so that protection never lapses; it lapses only while ferry
// is not running, and then the wal package's continuity checks decide.
//
// The same transaction keeps snapshots consistent: its read mark is at or
// before ferry's position, so the pages the transaction shows, overlaid
// with the log's latest frame of each page up to the position, are the
// database at that position, for as long as the transaction is held (see
// image).
//
// # POSIX locks
//
// SQLite locks the database file with fcntl locks, which a process loses,
// all of them, as soon as it closes any descriptor of that file. ferry
// therefore never opens the database file itself: it reads pages through
// SQLite (the sqlite_dbpage table, on its read transaction), so that a
// program that embeds ferry keeps the locks of its own connections. The
// log file carries no locks and is read directly.
package capture
