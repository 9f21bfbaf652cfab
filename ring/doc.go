// Package ring decides which gateway instance owns a tenant: the jump
// consistent hash (Lamping & Veach, 2014) of xxhash64(tenant ID) over the
// ordered member list. All of one tenant's series live on its owner.
//
// It owns membership and ownership: a static member list (ring.members,
// in the order given) or DNS discovery (ring.dns: A/AAAA or SRV records,
// sorted in natural order so that pod fedgate-10 follows fedgate-9), and the
// peer forwarding that carries a tenant's samples to its owner. It never
// decides what a sample is: validation, relabelling and storage happen
// elsewhere.
//
// A Ring is immutable: a membership change builds a new one, and Current
// swaps it whole, so a reader always sees one consistent member list.
// Owner allocates nothing and is safe for concurrent use.
//
// The order of the members is the jump-hash bucket order. Growing the ring
// by one member at the end moves only the tenants that now hash to it (about
// 1/n of them); removing the last member moves only its tenants. Adding or
// removing a member anywhere else moves most tenants, which is why DNS
// answers are sorted naturally and why a member missing from one answer can
// be kept for DNSOptions.RemoveAfter.
//
// An instance never computes ownership from a ring it is not in by
// accident: New refuses a self that names no member, and DNS discovery keeps
// the ring in force when an answer is empty, fails, or lacks this instance.
// NewDraining builds, on purpose, the ring of an instance being removed: it
// owns nothing.
//
// Forwarding: Router is the write path's storage. It stores a batch locally
// when this instance owns its tenant and otherwise forwards it, already
// validated and relabeled, to the owner's PeerPath (PeerHandler, internal
// listener, shared secret), synchronously, answering with the owner's
// verdict. Router.Handoff moves the held series of tenants this instance no
// longer owns to their new owner: it forwards each series' newest sample,
// then drops the series here unless a push that took this instance for
// the owner before the ring changed has committed a newer sample since,
// which the next handoff forwards (an answered sample is never dropped).
// The batch format is drawn in wire.go.
//
// With DNS discovery, a typical start:
//
//	d, err := ring.NewDNSDiscovery(ring.DNSOptions{Addr: dns, Self: self, Refresh: every}, nil, logger, reg)
//	r, _, err := d.Refresh(ctx) // retry until it succeeds, not ready meanwhile
//	cur := ring.NewCurrent(r)
//	go d.Run(ctx, cur, func(old, new *ring.Ring) { /* hand moved tenants off */ })
//
// DNSDiscovery's Refresh and Run may run concurrently; their lookups are
// serialized. Run puts each changed ring in force in the Current it is
// given.
package ring
