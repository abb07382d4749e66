// Package lease gives one writer at a time the right to write under a key
// of an object store (a replica, a round of uploads), across machines,
// with the store as the only coordinator: every change to a lease is a
// conditional write (create-only, or compare-and-swap on the etag the
// writer last saw), so two machines racing for one lease cannot both win.
//
// # Why two writers never both believe they hold a lease
//
// A lease record holds an absolute expiry E, written by its holder H from
// H's clock: E = (H's time at the renewal) + ttl. H renews every ttl/3.
// Everyone compares E with their own clock:
//
//   - H writes only while Valid(ttl/3) holds: by H's clock, more than
//     ttl/3 remains before E (Guard holds every write to that). Renewals
//     that fail leave E where it was, so H stops writing ttl/3 before E
//     by its own clock, whatever the store does.
//   - A taker T (a standby, a second replicate) takes the lease only once
//     E has passed by T's clock, and only with a compare-and-swap on the
//     etag of the record it read: if H renewed meanwhile, the swap fails
//     and T reads the new E.
//
// Let T's clock run ahead of H's by d. H's last write starts before real
// time E - ttl/3 (as H counts it); T's first write comes after real time
// E - d. So with d < ttl/3, H has stopped starting writes ttl/3 - d before
// T can start, and both never believe at once that they hold the lease.
// NTP keeps clocks within milliseconds; a ttl of seconds leaves room for
// skews of a second or more. A clock that jumps (a VM resumed, a clock set
// by hand) is a larger skew and can break this, which is why the writes
// themselves are guarded too (below).
//
// A holder that loses the lease learns it at its next renewal that reaches
// the store (the swap fails: ErrLost) and writes nothing more: Keep
// returns, Err is set, and Guard refuses every later write.
//
// # What a lease cannot do, and what covers it
//
// No lease stops a write already in flight: a process that passed the
// check and then stalled (a long pause, a request stuck in the network)
// past E can still land a write after T took over. So the writes that
// matter do not depend on the lease alone: change sets and manifests are
// stored create-only under keys that two writers of one history would
// both use (the next txid), so a late write either lands first, and the
// other writer's create fails and stops it, or fails itself; chunks are
// content-addressed, so a late chunk is the same bytes. A history in the
// bucket is never a mix of two writers'.
package lease
