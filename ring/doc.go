// Package ring decides which gateway instance owns a tenant: the jump
// consistent hash (Lamping & Veach, 2014) of xxhash64(tenant ID) over the
// ordered member list. All of one tenant's series live on its owner.
//
// It owns membership and ownership only; it never touches samples. A Ring is
// immutable: a membership change builds a new one. Owner allocates nothing.
//
// This version serves a single instance: the config refuses more than one
// member, and forwarding to other owners does not exist yet.
package ring
