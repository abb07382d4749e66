// Package layout owns the names of a replica's objects: it is the only
// place that spells a key or parses one, and Read is the only way to list
// what a replica holds. Everything else asks it, so that the layout can be
// read, tested and changed in one package.
//
// Under a replica's prefix (one database per prefix):
//
//	snapshots/<txid, 16 hex>.manifest                      ManifestKey
//	segments/<first txid, 16 hex>.seg                      ChangeSetKey
//	segments/<first txid, 16 hex>-<last txid, 16 hex>.seg  SegmentKey
//	chunks/<first 2 hex of the address>/<address, 64 hex>  ChunkKey
//	packs/<first 2 hex of the id>/<id, 32 hex>             PackKey
//	leases/...                                             reserved
//
// Hex digits are lower case and zero-padded, so that keys sort as their
// txids do and a listing comes back in txid order. Txids start at 1; a
// segment's last txid is at or after its first. Each parser accepts
// exactly what its key function produces, so a listing never mistakes a
// stray object (a copy someone renamed, an editor's backup) for one of
// ferry's: Read returns those as Foreign, with the reason. leases/ is kept
// free for the lease a replicator will hold on a replica; Read does not
// list it, and nothing may store anything else there.
//
// # Two spellings of a change set
//
// The replicator stores each change set under ChangeSetKey, named by its
// first txid alone, for two reasons:
//
//   - A follower that holds txid L finds the next change set with one GET
//     of ChangeSetKey(L+1), a key it can predict without knowing how many
//     transactions the replicator put in it; it never lists.
//   - Change sets are written create-only, which catches a second writer
//     on the same prefix only if the two writers' change sets collide on
//     a key. Two histories both carry on from the same txid, so under
//     first-only keys they collide; under ranged keys they would differ
//     in their last txid and quietly interleave.
//
// When a target's chain of change sets ends for good after txid L (the
// store refused one, the spool overflowed, the log broke), the replicator
// stores a break marker under ChangeSetKey(L+1) (format in package
// segment), so that a follower waiting for L+1 learns with the same GET
// to go on from a newer snapshot. A listing returns markers as Breaks:
// neither change sets nor damage.
//
// Compaction merges change sets into ones under SegmentKey, ranged: a
// merged change set starts where the first it replaces does, and must not
// take that one's key while it still exists. Every reader accepts both.
//
// A first-only key does not say where its change set ends, and a listing
// must: restore, verify, gc, compaction and the replicator's start all
// plan from exact txid ranges. Read therefore reads the 40-byte header of
// every object under a first-only key (one ranged GET each, 16 at a time,
// through a HeadReader, which package segment provides because it owns the
// format). An object whose header is unreadable or names another txid
// than its key is Foreign, like any stray object, never trusted. Ranged
// keys cost no read, and compaction turns old first-only change sets into
// ranged ones, so the reads stay as few as the recent change sets.
//
// The formats of the objects themselves belong elsewhere: package snapshot
// owns manifests and chunks, package segment owns change sets. They import
// this package for their keys; this package imports neither, so that the
// layout sits below every package that reads or writes a replica.
//
// # Who lists, and when
//
// A LIST is slow, paged (1,000 keys a request on S3) and billed, and its
// cost grows with the replica. So:
//
//   - The replicator does not list in the steady state. It knows what it
//     wrote, and every key it needs next is predictable from txids and
//     chunk addresses. It lists only when it starts: snapshots and
//     segments of each target, to find where the numbering ended when its
//     own state was lost (a txid must never name two states), and which
//     change sets a target already holds after a restart.
//   - A follower does not list in the steady state either: it GETs the
//     next change set by ChangeSetKey. Only a break marker, which says
//     the chain it follows has ended, sends it to list snapshots once, for
//     the newer one that carries the replica on.
//   - A restore, and the commands that show what a replica holds, list
//     snapshots and segments once, to plan.
//   - verify lists everything once, chunks and packs included, and checks presence
//     against the listing instead of asking for each object.
package layout
