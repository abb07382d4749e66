// Package compact merges runs of small change sets into larger ones, so
// that a restore near the end of a long chain downloads and verifies a few
// objects instead of one per sync interval.
//
// A merged change set holds exactly the transactions of the small ones it
// replaces, each with its commit time, database size and pages, byte for
// byte: its per-transaction boundaries are kept, so a point-in-time restore
// to any txid stays exact. It is stored under the ranged
// layout.SegmentKey(first, last) of the run, which no replicator ever
// writes: a replicator names its change sets by their first txid alone
// (layout.ChangeSetKey), and the first change set of the run still holds
// that key while the merged one is written. Listings read the header of
// each first-only change set for its last txid, so merging old ones into
// ranged keys also spares those reads.
//
// # Which change sets merge
//
// From one listing of the replica:
//
//   - Only change sets that start after the oldest snapshot. Those before
//     it serve no restore, and gc deletes the ones that end at or before
//     it.
//   - Only small ones: under half of TargetBytes (16 MiB by default, the
//     capture's own bound on a change set). A change set that big already
//     costs a restore one request per several MiB.
//   - Only ones older than MinAge by their modification time, so that the
//     live tail, which the replicator is still appending to and readers
//     are following, is left alone. Age is measured against this
//     machine's clock: it only decides what is worth merging, never what
//     is safe (see below), so an offset between clocks costs nothing but
//     an early or late merge.
//   - Only ones that overlap no other change set. Overlaps are settled
//     first (see below); whatever overlap is left, compaction keeps out of.
//
// A run is a sequence of such change sets, each starting at the previous
// one's last txid + 1. A run is split at a gap or a hole (anything not
// eligible, or missing), and where a snapshot's txid is the last txid of a
// change set: a merged change set then never spans a snapshot, so gc,
// which deletes change sets that end at or before the oldest snapshot it
// keeps, can still delete history one snapshot at a time. A run is packed
// greedily, oldest first, into merged change sets of at most TargetBytes
// (by the sizes listed) and at most 100,000 transactions, the capture's
// own bounds, and a merged change set is written only from two or more
// change sets.
//
// One more rule keeps the bytes rewritten in check: a run does not start
// with a change set bigger than the rest of the run together. Without it,
// a merged change set would be merged again with every new hour's small
// ones until it reached the target, rewriting the same bytes hundreds of
// times. With it, change sets merge like a binary counter: a byte is
// rewritten only when the change set holding it at least doubles, a
// logarithmic number of times.
//
// # How a run is merged
//
// Each change set of the run is downloaded and verified whole, which
// checks its chained checksums. Their transactions are copied into a new
// change set covering the run, which is stored create-only and then read
// back from the store: verified whole again, and compared, transaction by
// transaction and page by page, with the small ones. Only then are the
// small ones deleted. A change set that is damaged is left alone and
// reported, and splits its run there; one that has gone since the listing
// (another compaction, or gc) abandons its run.
//
// # Overlap, and why killing compaction loses nothing
//
// Killed at any instruction, compaction leaves the small change sets, the
// merged one, or both. While both exist they overlap, which the restore
// catalog handles: a chain takes the change set reaching furthest (the
// merged one), and a restore that finds it damaged, or a small one gone
// since it planned, plans again around it (package restore).
//
// Each run begins by settling such overlaps. A change set that lies
// wholly within a longer one (one compaction left behind, or a change set
// captured again after a crash) is deleted once the longer one has been
// read intact and found to hold the same transactions; a damaged one
// within an intact longer one is deleted too, since the longer one holds
// everything it did. A longer one that is damaged is left alone with what
// it covers, and reported.
//
// The safety argument: compaction deletes a change set only after reading,
// in the same run, every one of its transactions intact from a strictly
// longer change set that contains it, and deletes that one in turn only on
// the same terms. It never deletes a change set that no longer one
// contains, and containment by a strictly longer range cannot go round in
// a circle, so every txid stays held by an intact change set that
// compaction never deletes, whatever runs concurrently: a second
// compaction follows the same rule, a replicator never writes into a
// merged range, and gc deletes only what no kept snapshot needs.
package compact
