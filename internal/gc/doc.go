// Package gc gives a replica's history a lifecycle: it deletes the
// snapshots, change sets, packs and chunks that no restore inside the retention
// period needs, without ever leaving a manifest that names an absent
// chunk, even while a replicator, on this machine or another, is taking a
// snapshot of the same replica.
//
// # What is kept
//
// Every txid committed within Retention of now stays restorable, and so
// does the newest state. The oldest snapshot kept is the newest one taken
// at or before now-Retention (or the oldest there is, when none is that
// old); it and every snapshot after it stay, with every change set after
// it. Older snapshots and change sets that end at or before it go, and
// then every pack and chunk that no kept manifest names and that is old
// enough (see below). Deletions go oldest first: manifests, then change
// sets, then packs and chunks. Killed at any instruction, gc leaves a replica whose kept part
// is untouched; what it did not delete yet is garbage for the next run.
//
// # Why a pack is never deleted from under a snapshot
//
// Today's snapshots store chunks in packs (package snapshot), and name
// packs they did not store themselves only when those are packs of the
// replicator's previous snapshot, the newest manifest, which is always
// kept. The packs a snapshot in flight stores are named by no manifest
// until its own lands, so a pack named by no kept manifest is deleted only
// once it is older than Grace (rule 1 below), which must exceed the
// longest a snapshot takes.
//
// # Why a loose chunk is never deleted from under a snapshot
//
// Snapshots of manifest version 1, which an older ferry may still be
// writing to the same replica, store each chunk as an object of its own,
// and name chunks they did not upload in two ways: chunks of the
// replicator's previous snapshot, always kept as above, and chunks that a
// create-only upload found already stored. The second kind is the
// danger: such a chunk may be named by no manifest (its snapshots
// expired) and be on its way out. Two rules make it safe.
//
//  1. Grace. A chunk named by no manifest is deleted only once it is older
//     than Grace by the store's own clock (its modification time against
//     the modification time of an object gc writes at the start of each
//     run). A snapshot in flight uploads chunks that no manifest names
//     until its own lands; Grace must exceed the longest a snapshot takes,
//     so that they are never taken for garbage.
//
//  2. Reprieve. Before a snapshot relies on a chunk it found already
//     stored, it stores a reprieve naming that chunk (and the chunks it
//     uploaded itself, which the wait would otherwise age), waits out the
//     ReprieveWindow, and only then checks that the chunk is still there
//     (uploading it again if not). gc lists reprieves after it has decided
//     what is garbage, spares every chunk a reprieve names, and deletes
//     nothing later than ReprieveWindow after that listing began, by its
//     own monotonic clock (past it, it lists reprieves again).
//
// Grace therefore covers the reprieve wait too: gc refuses a grace under
// MinGrace (the window plus two seconds, since some stores keep
// modification times to the second, and ages are counted a second short
// for them).
//
// The argument: suppose gc deletes chunk C at time D, and a snapshot that
// relied on finding C stored lands its manifest. The snapshot stored its
// reprieve at time R and checked C at R+W (W the window). If gc's reprieve
// listing began at L after R, it saw the reprieve and spared C. So L < R,
// and D < L+W < R+W: C was already gone when the snapshot checked it, and
// the snapshot uploaded it again. Either way, the manifest's chunks are
// there when it lands. Only durations are compared, each on one machine's
// monotonic clock, so clock offsets between machines do not matter; the
// store's clock is used only for ages (rule 1). A reprieve older than
// Grace belongs to a snapshot that has landed or failed, and is deleted.
//
// A change set or manifest is deleted only when older than retention, which
// no replicator writes again. So the only objects a concurrent writer can
// need are chunks, which the two rules cover.
package gc
