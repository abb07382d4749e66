// Package snapshot owns ferry's snapshots: whole images of a database at
// one txid, stored as content-addressed chunks and a manifest that names
// them in order.
//
// What it promises:
//
//   - A manifest is written last, create-only, and only once every chunk it
//     names is in the store, so a manifest that exists is a restorable
//     snapshot (Write).
//   - A snapshot rereads and uploads only what changed: given the previous
//     manifest and the chunks the WAL dirtied since, Write hashes only the
//     dirty chunks and uploads only chunks the store does not hold.
//   - Everything read back is untrusted. Restore checks every chunk's size
//     and address against the manifest before writing it, and the whole
//     image against the manifest's database hash; Load and List bound what
//     they read. Every error names the object it is about.
//
// # Chunks
//
// The database image (page size × page count bytes) is cut into chunks of
// ChunkSize (64 KiB) aligned to the file: chunk i is bytes
// [i×64 KiB, (i+1)×64 KiB), and the last chunk may be shorter. With 64 KiB
// pages a chunk is one page; with smaller pages it is a run of them, so a
// page never straddles two chunks. A chunk's address is, for scheme 1, the
// SHA-256 of its plaintext, and for scheme 2 (an encrypted replica) the
// HMAC-SHA256 of its plaintext under a key of the replica's, so that an
// address leaks nothing and deduplication still works within one key. A
// chunk is stored zstd-compressed as one frame.
//
// # Packs
//
// A snapshot stores the chunks it uploads in packs (PackSize, 4 MiB): the
// frames one after another, nothing between them, under a random name
// (package layout spells every key of a replica):
//
//	packs/<first 2 hex of the id>/<id, 32 hex>
//
// The manifest says where each chunk is: which pack, at which offset, how
// long. So a snapshot of 1 GiB costs about 150 requests to store and as
// many ranged reads to restore, not 16,384 of each; and a chunk that did
// not change since the previous snapshot is not stored again, as the new
// manifest points into the old pack. A pack goes (package gc) once no
// manifest kept names it; so that a few live chunks do not hold a mostly
// dead pack for ever, Write stores again the unchanged chunks of a pack
// that would hold less than half its bytes for the new snapshot.
//
// Version 1 manifests, which older replicas hold, name chunks stored one
// object each, under ChunkKey:
//
//	chunks/<first 2 hex of the address>/<address, 64 hex>
//
// Every reader still restores them; a version 2 manifest can name such
// loose chunks too (Loose), as a snapshot taken after one from version 1
// points at the chunks it shares with it.
//
// # Database hash
//
// A manifest records a hash of the whole database: the SHA-256 of
//
//	"ferry-db-v1\x00" || page size u32 LE || page count u32 LE || address 0 || address 1 || ...
//
// A flat SHA-256 of the file would force every snapshot to reread the
// whole database, which the contract forbids unless continuity broke;
// because each address is a hash of its chunk's bytes, this hash list
// commits to every byte of the image just the same, and Write can keep it
// current by rehashing only dirty chunks. DBHash computes it for a local
// file, so a database and a manifest can be compared without downloading.
//
// # Manifest format, versions 1 and 2
//
// Stored under ManifestKey: snapshots/<txid, 16 hex>.manifest. All
// integers are little-endian.
//
//	header (96 bytes)
//	  0   8  magic "FERRYSNP"
//	  8   2  format version, 1 or 2
//	 10   1  address scheme: 1 = SHA-256 of the plaintext chunk,
//	         2 = HMAC-SHA256 of the plaintext chunk under a secret key
//	 11   1  chunk encoding: 1 = one zstd frame
//	 12   4  page size: a power of two from 512 to 65536
//	 16   4  page count, at least 1
//	 20   4  chunk size, 65536
//	 24   4  chunk count = ceil(page size × page count / chunk size)
//	 28   4  address key: for scheme 2 the tag of the key that named the
//	         chunks (never 0), for scheme 1 zero
//	 32   8  txid, at least 1
//	 40   8  time of the txid's commit, unix nanoseconds (UTC, >= 0)
//	 48   8  database size in bytes = page size × page count
//	 56  32  database hash (above)
//	 88   4  CRC32C (Castagnoli) of bytes 0..88
//	 92   4  version 1: zero; version 2: pack count, at most chunk count
//	chunk addresses: chunk count × 32 bytes, in chunk order
//	version 2 only:
//	  packs: pack count × 20 bytes: id (16), size in bytes (u32)
//	  locations: chunk count × 12 bytes, in chunk order: pack index (u32,
//	  0xffffffff for a loose chunk), offset (u32), stored length (u32);
//	  a loose chunk's offset and length are zero
//	trailer: SHA-256 of every byte before it (32 bytes)
//
// The header has its own checksum so that List can show a snapshot from
// its first 96 bytes alone; Load reads the whole manifest and checks the
// trailer. Every field is checked against the others, and the length must
// be exactly what the counts make it: every location inside its pack,
// every pack named once and used. A manifest is at most MaxManifestSize
// bytes, which caps a snapshot at about 128 GiB of database in version 1
// and about 90 GiB in version 2.
package snapshot
