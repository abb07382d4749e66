package layout

import "strings"

// ReplicatorLeaseKey is the object that holds the lease of the replicator
// writing to a replica (package lease), under leases/ so that Read never
// mistakes it for one of the replica's objects.
const ReplicatorLeaseKey = "leases/replicator"

// Cleartext reports whether key names an object that stays unencrypted on
// a replica with encryption on. Such objects carry nothing of the
// database: the lease names a host and a process so that a second writer
// can say who holds it, even without the key; the collector's clock is
// empty; a reprieve lists chunk addresses, which the chunks' own keys
// already show.
func Cleartext(key string) bool {
	return strings.HasPrefix(key, "leases/") || key == ClockKey || strings.HasPrefix(key, ReprievesDir)
}
