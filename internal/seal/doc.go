// Package seal encrypts what ferry stores for a replica with encryption on,
// so that the bucket holds only ciphertext, and authenticates everything it
// reads back, so that a flipped byte is an error and never plaintext
// garbage.
//
// # Keys
//
// A key file holds one 256-bit secret (Generate makes one; ferry keygen
// writes it). Everything else is derived from the secret with HKDF-SHA256
// under distinct labels:
//
//   - the key id, 8 bytes, shown in hex in messages and written in the
//     clear into every object the key encrypts, so that a reader can say
//     which key an object needs. It reveals nothing of the secret.
//   - the wrapping key, which encrypts each object's file key.
//   - the address key, under which chunks are named (HMAC-SHA256 of their
//     plaintext, snapshot.SchemeHMAC), so that an address cannot confirm a
//     guessed page; deduplication still works within one key.
//
// A Ring holds the key new objects are written with and any number of
// read-only keys, the old keys of a rotation: history they wrote stays
// readable until retention has removed it, and then they can be dropped.
//
// # Objects
//
// Each object is an age file (age-encryption.org/v1): a random 128-bit
// file key, from which age derives the payload key, and the payload in
// ChaCha20-Poly1305 STREAM chunks of 64 KiB, each authenticated, the last
// one marked so that truncation shows. The file key is wrapped in one
// recipient stanza of type "ferry" whose argument is the key id and whose
// body is XChaCha20-Poly1305 (random 24-byte nonce) of the file key under
// the wrapping key, with the object's key name as associated data. The
// name binds the ciphertext to its place: an object copied or moved to
// another key name in the bucket no longer opens, so nobody with write
// access to the bucket but not the key can swap one change set or file
// for another.
//
// age is a named, reviewed format with a maintained Go implementation;
// only the stanza is ferry's, and it is the textbook construction of a
// symmetric key wrap.
//
// # What stays in the clear
//
// Key names (txids, chunk addresses, file paths), object sizes and counts,
// store timestamps, object metadata, the key id of each object, and the
// objects that hold no data of the database or the files: the replicator's
// lease (host name, process id, expiry), the collector's clock and its
// reprieves (lists of chunk addresses). layout.Cleartext names those.
package seal
