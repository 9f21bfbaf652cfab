package ring

import (
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// Member is one gateway instance.
type Member struct {
	Name string
	URL  string
}

// Ring is an ordered member list and this instance's place in it.
type Ring struct {
	members []Member
	self    int
}

// New builds a ring. The order of members is the jump-hash bucket order.
func New(members []Member, self string) (*Ring, error) {
	if len(members) == 0 {
		return nil, errors.New("ring has no members")
	}
	r := &Ring{members: members, self: -1}
	for i, m := range members {
		if m.Name == self {
			r.self = i
		}
	}
	if r.self < 0 {
		return nil, fmt.Errorf("self %q is not a member", self)
	}
	return r, nil
}

// Members returns the number of members.
func (r *Ring) Members() int { return len(r.members) }

// Owner returns the member that owns tenant and whether it is this instance.
func (r *Ring) Owner(tenant string) (Member, bool) {
	i := Jump(xxhash.Sum64String(tenant), len(r.members))
	return r.members[i], i == r.self
}

// Jump maps key to a bucket in [0, buckets) such that growing buckets by one
// moves only the keys that land in the new bucket.
func Jump(key uint64, buckets int) int {
	b, j := int64(-1), int64(0)
	for j < int64(buckets) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}
