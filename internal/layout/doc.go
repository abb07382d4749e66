// Package layout owns the names of a replica's objects: it is the only
// place that spells a key or parses one, and Read is the only way to list
// what a replica holds. Everything else asks it, so that the layout can be
// read, tested and changed in one package.
//
// Under a replica's prefix (one database per prefix):
//
//	snapshots/<txid, 16 hex>.manifest                      ManifestKey
//	segments/<first txid, 16 hex>-<last txid, 16 hex>.seg  SegmentKey
//	chunks/<first 2 hex of the address>/<address, 64 hex>  ChunkKey
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
//   - A restore, and the commands that show what a replica holds, list
//     snapshots and segments once, to plan.
//   - verify lists everything once, chunks included, and checks presence
//     against the listing instead of asking for each object.
package layout
