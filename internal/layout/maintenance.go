package layout

import (
	"fmt"
	"strings"
)

// Keys of the objects that keep garbage collection safe beside a writer
// (see package gc). Neither is ever listed by a replicator.
const (
	// ClockKey is an object gc writes at the start of each run: its
	// modification time is "now" on the store's own clock, against which
	// the ages of objects are measured.
	ClockKey = "gc/clock"

	// ReprievesDir is the prefix under which snapshots store reprieves,
	// and which gc lists.
	ReprievesDir = "reprieves/"
)

// ReprieveKey returns the key of a reprieve a snapshot at txid stores
// before it relies on chunks it found already stored; nonce tells apart
// the attempts of one txid.
func ReprieveKey(txid uint64, nonce string) string {
	return fmt.Sprintf("%s%016x-%s", ReprievesDir, txid, nonce)
}

// ParseReprieveKey returns the txid a reprieve key names.
func ParseReprieveKey(key string) (uint64, error) {
	name, ok := strings.CutPrefix(key, ReprievesDir)
	if !ok || len(name) < 18 || name[16] != '-' {
		return 0, fmt.Errorf("%q is not a reprieve key (reprieves/<16 hex>-<nonce>)", key)
	}
	txid, err := parseHex16(name[:16])
	if err != nil {
		return 0, fmt.Errorf("%q is not a reprieve key: %w", key, err)
	}
	return txid, nil
}
