package ring

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// ErrSelfMissing is returned when this instance's name matches no member: an
// instance must never compute ownership from a ring it is not in.
var ErrSelfMissing = errors.New("self is not a member")

// Member is one gateway instance.
type Member struct {
	Name string
	URL  string
}

// Ring is an ordered member list and this instance's place in it.
type Ring struct {
	members []Member
	self    int    // index of this instance, or -1 when draining
	name    string // this instance's name when draining
}

// New builds a ring. The order of members is the jump-hash bucket order; New
// copies the list, so the caller may reuse it.
//
// self names this instance. It matches the member of that exact name or, when
// none has it, the one member whose name starts with self followed by "." or
// ":". So "fedgate-0" matches the DNS name
// "fedgate-0.fedgate.monitoring.svc.cluster.local", and "10.0.0.7" matches
// "10.0.0.7:9096", but "fedgate-1" never matches "fedgate-10.…". A self that
// matches no member, or several by prefix, is an error.
func New(members []Member, self string) (*Ring, error) {
	if len(members) == 0 {
		return nil, errors.New("ring has no members")
	}
	seen := make(map[string]struct{}, len(members))
	for _, m := range members {
		if _, dup := seen[m.Name]; dup {
			return nil, fmt.Errorf("duplicate member %q", m.Name)
		}
		seen[m.Name] = struct{}{}
	}
	i, err := matchSelf(members, self)
	if err != nil {
		return nil, err
	}
	return &Ring{members: append([]Member(nil), members...), self: i}, nil
}

// matchSelf returns the index of the member self names, as New describes.
func matchSelf(members []Member, self string) (int, error) {
	trimmed := strings.TrimSuffix(self, ".") // a fully qualified name
	for _, name := range []string{self, trimmed} {
		for i, m := range members {
			if m.Name == name {
				return i, nil
			}
		}
	}
	self = trimmed
	found := -1
	for i, m := range members {
		if self == "" || len(m.Name) <= len(self) || !strings.HasPrefix(m.Name, self) {
			continue
		}
		if c := m.Name[len(self)]; c != '.' && c != ':' {
			continue
		}
		if found >= 0 {
			return -1, fmt.Errorf("self %q matches both %q and %q", self, members[found].Name, m.Name)
		}
		found = i
	}
	if found < 0 {
		return -1, fmt.Errorf("%w: %q", ErrSelfMissing, self)
	}
	return found, nil
}

// Members returns the number of members.
func (r *Ring) Members() int { return len(r.members) }

// MemberList returns the members in bucket order. The caller must not
// change it.
func (r *Ring) MemberList() []Member { return r.members }

// Self returns this instance's member.
func (r *Ring) Self() Member {
	if r.self < 0 {
		return Member{Name: r.name}
	}
	return r.members[r.self]
}

// NewDraining builds a ring that does not contain this instance, self: an
// instance being removed. It owns no tenant, so it forwards every write and
// hands off everything it holds.
func NewDraining(members []Member, self string) (*Ring, error) {
	if len(members) == 0 {
		return nil, errors.New("ring has no members")
	}
	r, err := New(members, members[0].Name)
	if err != nil {
		return nil, err
	}
	if _, err := matchSelf(members, self); err == nil {
		return nil, fmt.Errorf("self %q is a member: not draining", self)
	}
	r.self, r.name = -1, self
	return r, nil
}

// Draining reports whether this instance is outside the ring.
func (r *Ring) Draining() bool { return r.self < 0 }

// Owner returns the member that owns tenant and whether it is this instance.
// It allocates nothing.
func (r *Ring) Owner(tenant string) (Member, bool) {
	i := Jump(xxhash.Sum64String(tenant), len(r.members))
	return r.members[i], i == r.self
}

// sameMembers reports whether r and o list the same members in the same
// order with this instance at the same place.
func (r *Ring) sameMembers(o *Ring) bool {
	if r == nil || o == nil {
		return r == o
	}
	if r.self != o.self || len(r.members) != len(o.members) {
		return false
	}
	for i := range r.members {
		if r.members[i] != o.members[i] {
			return false
		}
	}
	return true
}

// Jump maps key to a bucket in [0, buckets) such that growing buckets by one
// moves only the keys that land in the new bucket (Lamping & Veach, "A Fast,
// Minimal Memory, Consistent Hash Algorithm", 2014). buckets must be > 0.
func Jump(key uint64, buckets int) int {
	b, j := int64(-1), int64(0)
	for j < int64(buckets) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}
