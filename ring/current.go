package ring

import "sync/atomic"

// Current holds the ring in force; membership changes swap it whole, so a
// reader always sees one consistent member list.
type Current struct {
	p atomic.Pointer[Ring]
}

// NewCurrent starts with r.
func NewCurrent(r *Ring) *Current {
	c := &Current{}
	c.p.Store(r)
	return c
}

// Load returns the ring in force.
func (c *Current) Load() *Ring { return c.p.Load() }

// Store puts r in force and returns the ring it replaced.
func (c *Current) Store(r *Ring) *Ring { return c.p.Swap(r) }
