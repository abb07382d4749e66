// Package follow keeps a read replica of a database up to date from its
// replica in object storage: it restores the newest state once, then
// applies each new transaction as it appears, one SQLite transaction per
// source transaction, until its context ends.
//
// What it promises:
//
//   - Readers of the follower's database, in this process or any other,
//     only ever see committed states of the source, each a whole
//     transaction. Pages are written through SQLite itself (the
//     sqlite_dbpage virtual table over a WAL-mode connection), so a reader
//     keeps the snapshot it started with and is never blocked by the
//     follower: a source transaction becomes visible at once, at the
//     follower's COMMIT.
//   - The txid the database holds survives kill -9 and power loss: it is
//     recorded beside the database after each commit (see mark.go), and a
//     restart continues from it without a full restore.
//   - When the history the follower needs is gone (a gap, retention, a
//     replica that was replaced), it restores the newest state again, in
//     one transaction that readers see as one step, and says so at WARN.
//
// How the next change set is found is one function, nextFunc (next.go),
// so that the way change sets are named can change in one place.
package follow
