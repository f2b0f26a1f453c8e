// Package resolver is lnm's DNS: an authoritative server that answers the allow list with the
// box's own address, relays stub zones to plant name servers, and an upstream client with a
// cache that the forwarder uses to find where an allowed name really lives.
//
// The server is never a recursive resolver. A name the list allows resolves to the box, so the
// device's next connection comes to the forwarder, which checks the same list again. A name the
// list does not allow does not exist (NXDOMAIN), except where allowed names lie below it.
//
// The box behaves as the only authority of one flat namespace rooted at ".": there are no
// zone cuts, so every synthesized negative answer carries the same SOA, owned by the root.
// That owner is the zone every name is in (RFC 2308 §3), it does not change when the list is
// reloaded, and it cannot contradict another answer of the box the way a per-name apex could
// (NXDOMAIN for "com" beside an SOA owned by "com").
package resolver
