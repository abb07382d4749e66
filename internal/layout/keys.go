package layout

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The directories of a replica, each with the trailing slash a listing
// prefix needs.
const (
	snapshotsDir = "snapshots/"
	segmentsDir  = "segments/"
	chunksDir    = "chunks/"
	packsDir     = "packs/"

	manifestSuffix = ".manifest"
	segmentSuffix  = ".seg"
)

// ManifestKey returns the key of the manifest of the snapshot at txid.
func ManifestKey(txid uint64) string {
	return fmt.Sprintf("%s%016x%s", snapshotsDir, txid, manifestSuffix)
}

// ParseManifestKey returns the txid a manifest key names. It accepts
// exactly what ManifestKey produces for a txid of at least 1.
func ParseManifestKey(key string) (uint64, error) {
	name, ok := strings.CutPrefix(key, snapshotsDir)
	if ok {
		name, ok = strings.CutSuffix(name, manifestSuffix)
	}
	if !ok || len(name) != 16 {
		return 0, fmt.Errorf("%q is not a manifest key (snapshots/<16 hex>.manifest)", key)
	}
	txid, err := parseHex16(name)
	if err == nil && txid == 0 {
		err = errors.New("txid 0; txids start at 1")
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a manifest key: %w", key, err)
	}
	return txid, nil
}

// ChangeSetKey returns the key under which the replicator stores the
// change set that starts at txid first, or the break marker saying that
// the chain of change sets ends at first-1. A follower that holds txid
// first-1 predicts it, and finds the next change set with one GET.
func ChangeSetKey(first uint64) string {
	return fmt.Sprintf("%s%016x%s", segmentsDir, first, segmentSuffix)
}

// ParseChangeSetKey returns the txid a change-set key names. It accepts
// exactly what ChangeSetKey produces for a txid of at least 1.
func ParseChangeSetKey(key string) (uint64, error) {
	name, ok := strings.CutPrefix(key, segmentsDir)
	if ok {
		name, ok = strings.CutSuffix(name, segmentSuffix)
	}
	if !ok || len(name) != 16 {
		return 0, fmt.Errorf("%q is not a change-set key (segments/<16 hex>.seg)", key)
	}
	first, err := parseHex16(name)
	if err == nil && first == 0 {
		err = errors.New("txid 0; txids start at 1")
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a change-set key: %w", key, err)
	}
	return first, nil
}

// ParseAnySegmentKey accepts both spellings of a change set's key: the
// ranged one of SegmentKey, and the first-only one of ChangeSetKey, for
// which last is 0 because only the object itself says it.
func ParseAnySegmentKey(key string) (first, last uint64, err error) {
	if first, err := ParseChangeSetKey(key); err == nil {
		return first, 0, nil
	}
	return ParseSegmentKey(key)
}

// SegmentKey returns the ranged key of a change set holding txids
// first..last, which compaction gives the change sets it merges: a
// merged one starts at the same txid as the first change set it
// replaces, and must not take that one's key.
func SegmentKey(first, last uint64) string {
	return fmt.Sprintf("%s%016x-%016x%s", segmentsDir, first, last, segmentSuffix)
}

// ParseSegmentKey returns the txid range a segment key names. It accepts
// exactly what SegmentKey produces for 1 <= first <= last.
func ParseSegmentKey(key string) (first, last uint64, err error) {
	name, ok := strings.CutPrefix(key, segmentsDir)
	if ok {
		name, ok = strings.CutSuffix(name, segmentSuffix)
	}
	if !ok || len(name) != 33 || name[16] != '-' {
		return 0, 0, fmt.Errorf("%q is not a segment key (segments/<16 hex>-<16 hex>.seg)", key)
	}
	if first, err = parseHex16(name[:16]); err == nil {
		last, err = parseHex16(name[17:])
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%q is not a segment key: %w", key, err)
	}
	if first == 0 || last < first {
		return 0, 0, fmt.Errorf("segment key %q names an empty or reversed txid range", key)
	}
	return first, last, nil
}

// ChunkKey returns the key of the chunk with content address addr. The
// two-digit directory spreads chunks over 256 prefixes, which a store
// partitions by, and keeps any one directory of a file store small.
func ChunkKey(addr [32]byte) string {
	s := hex.EncodeToString(addr[:])
	return chunksDir + s[:2] + "/" + s
}

// ParseChunkKey returns the content address a chunk key names. It accepts
// exactly what ChunkKey produces.
func ParseChunkKey(key string) ([32]byte, error) {
	var addr [32]byte
	name, ok := strings.CutPrefix(key, chunksDir)
	if !ok || len(name) != 3+2*len(addr) || name[2] != '/' || name[:2] != name[3:5] {
		return addr, fmt.Errorf("%q is not a chunk key (chunks/<2 hex>/<the same 2 and 62 more hex>)", key)
	}
	if !lowerHex(name[3:]) {
		return addr, fmt.Errorf("%q is not a chunk key: the address is not lower-case hex", key)
	}
	hex.Decode(addr[:], []byte(name[3:]))
	return addr, nil
}

// PackKey returns the key of the pack named id. A pack holds many chunks
// of one snapshot's upload, one after another (package snapshot owns the
// format); its name is random, as two packs of equal content are no use
// to anyone, and spread over 256 prefixes as chunks are.
func PackKey(id [16]byte) string {
	s := hex.EncodeToString(id[:])
	return packsDir + s[:2] + "/" + s
}

// ParsePackKey returns the id a pack key names. It accepts exactly what
// PackKey produces.
func ParsePackKey(key string) ([16]byte, error) {
	var id [16]byte
	name, ok := strings.CutPrefix(key, packsDir)
	if !ok || len(name) != 3+2*len(id) || name[2] != '/' || name[:2] != name[3:5] {
		return id, fmt.Errorf("%q is not a pack key (packs/<2 hex>/<the same 2 and 30 more hex>)", key)
	}
	if !lowerHex(name[3:]) {
		return id, fmt.Errorf("%q is not a pack key: the id is not lower-case hex", key)
	}
	hex.Decode(id[:], []byte(name[3:]))
	return id, nil
}

// parseHex16 parses a txid as keys spell it. strconv alone would accept
// upper case, and a key that differs only in case would then name the
// same txid as ours under another key.
func parseHex16(s string) (uint64, error) {
	if len(s) != 16 || !lowerHex(s) {
		return 0, fmt.Errorf("%q is not 16 lower-case hex digits", s)
	}
	return strconv.ParseUint(s, 16, 64)
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
