package layout

// ReplicatorLeaseKey is the object that holds the lease of the replicator
// writing to a replica (package lease), under leases/ so that Read never
// mistakes it for one of the replica's objects.
const ReplicatorLeaseKey = "leases/replicator"
