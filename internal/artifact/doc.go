// Package artifact ships a whole directory to object storage as one
// verified unit, brings it back, and can hold a lease (package lease) so
// that several machines agree on which of them runs a round of uploads.
//
// An artifact under key KEY is three sibling objects:
//
//	KEY.tar            the directory as a PAX tar: regular files, directories
//	                   and symlinks that stay inside the directory
//	KEY.manifest.json  written last; its presence means the artifact is
//	                   complete. It records the tar's size and SHA-256 and,
//	                   for every entry, its path, type, mode, size, SHA-256
//	                   and link target
//	KEY.lease          present only while or after a lease was taken on KEY
//
// Suffixes rather than a KEY/ directory keep the three objects siblings, so
// that artifacts named "x" and "x/y" never make one object key a prefix
// directory of another: versitygw's POSIX backend, for one, cannot store
// keys "x" and "x/y" side by side.
//
// What the package promises:
//
//   - Everything read back is untrusted. Download checks the manifest
//     (bounded in bytes and entries) before it fetches the tar, refuses any
//     path, link or entry type that could reach outside the destination,
//     checks every file's size and SHA-256 and the tar's own, and unpacks
//     into a staging directory beside the destination through an os.Root, so
//     that no write can follow a link out of it. Only a fully verified tree
//     is renamed into place; on any failure the staging directory is
//     removed and the destination is left as it was.
//   - An artifact is complete or absent: Upload writes the manifest only
//     after the tar is stored, and Download reads nothing without one.
//   - Modes are normalised: files are 0644, or 0755 when the owner may
//     execute them; directories are 0755. Owners and times are not kept.
package artifact
