// Package segment owns ferry's change sets: the objects that carry every
// committed transaction between two snapshots, one page image at a time,
// so that a restore can stop at any single transaction.
//
// What it promises: a Writer streams transactions into a segment in memory
// that does not grow with the segment; a Reader streams them back out, with
// the same bound, and refuses anything that is not exactly what a Writer
// produces. Every byte of a segment is covered by a checksum, so a
// truncated or bit-flipped object fails with an error matching
// objstore.ErrCorrupt instead of yielding a page. Because pages reach the
// caller before the end of the object is seen, a restore that must never
// apply half-verified data (contract §3) first verifies the whole segment
// (Verify, or Open for a verify-then-read pass over a seekable copy), or
// applies a transaction only once NextPage has reported its commit, which
// carries a checksum of everything before it.
//
// The replicator stores a segment under layout.ChangeSetKey(first), named
// by its first txid alone; compaction stores the segments it merges under
// Key(first, last). Package layout spells both, with every other key of a
// replica, and explains why:
//
//	segments/<first txid, 16 hex>.seg
//	segments/<first txid, 16 hex>-<last txid, 16 hex>.seg
//
// A break marker (MarshalBreak) may take a first-only key instead of a
// segment; ParseHead tells the two apart from their first 40 bytes, and
// Heads is how listings read them.
//
// # Format, version 1
//
// All integers are little-endian. A segment is a fixed header, a body
// compressed as one zstd stream, and a fixed trailer:
//
//	header (40 bytes, not compressed)
//	  0   8  magic "FERRYSEG"
//	  8   2  format version, 1
//	 10   2  flags; bit 0 = the body is zstd-compressed. Version 1 requires
//	         exactly 1; any other value is refused as a version mismatch
//	 12   4  page size: a power of two from 512 to 65536
//	 16   8  first txid, at least 1
//	 24   8  last txid, at least first; last-first+1 <= MaxTxns
//	 32   4  reserved, zero
//	 36   4  CRC32C (Castagnoli) of bytes 0..36
//
//	body (decoded; stored as a single zstd stream)
//	  for each txid from first to last, in order:
//	    'T'  txid u64, commit time i64 (unix nanoseconds, UTC, >= 0),
//	         database size in pages after the commit u32 (>= 1)
//	    for each page the transaction changed, in strictly ascending page
//	    number order (so no page appears twice):
//	      'P'  page number u32 (1..database size), page bytes [page size]
//	    'C'  number of pages in the transaction u32,
//	         chain: SHA-256 of every decoded byte before it (the header and
//	         the body up to and including this record's page count)
//
//	trailer (80 bytes, not compressed)
//	  0   8  magic "FERRYEND"
//	  8   8  transactions in the segment
//	 16   8  pages in the segment (at most MaxPages)
//	 24   8  length of the decoded body
//	 32   8  length of the compressed body
//	 40   4  CRC32C of the compressed body
//	 44   4  reserved, zero
//	 48  32  SHA-256 of the header, the decoded body and trailer bytes 0..48
//
// Why this shape:
//
//   - The header is fixed and uncompressed so that a reader can learn the
//     txid range and page size, and refuse a hostile range or an unknown
//     version, before it decodes anything.
//   - The trailer sits at the end because its counts are only known once
//     the last transaction is written; a streaming reader holds back the
//     last 80 bytes of its input so that the decoder never sees them.
//   - The chain checksum in each commit record proves every transaction up
//     to it intact the moment the commit is read, so a restore reading a
//     damaged segment can stop at the last provable transaction.
//   - The CRC32C of the compressed bytes catches any damage there even
//     where the decoder would tolerate it, and the SHA-256 in the trailer
//     covers the trailer's own counts.
//   - A transaction with no pages is allowed: it keeps the txid sequence
//     gapless when a commit only changes the database size.
package segment
