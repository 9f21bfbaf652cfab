package ring

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// TestJumpGrowthMovesKeysOnlyToNewBucket pins the property the ring relies
// on: adding a member at the end moves keys only to that member.
func TestJumpGrowthMovesKeysOnlyToNewBucket(t *testing.T) {
	for n := 1; n < 16; n++ {
		moved := 0
		for k := range 10000 {
			key := xxhash.Sum64String(fmt.Sprintf("cluster-%d", k))
			before, after := Jump(key, n), Jump(key, n+1)
			if before != after {
				if after != n {
					t.Fatalf("n=%d: key moved from %d to %d, not to the new bucket", n, before, after)
				}
				moved++
			}
		}
		if want := 10000 / (n + 1); moved < want*8/10 || moved > want*12/10 {
			t.Errorf("n=%d: %d keys moved, want about %d", n, moved, want)
		}
	}
}

// podRing is a ring of StatefulSet pods fedgate-0 … fedgate-(n-1) as SRV
// discovery names them, this instance being fedgate-0.
func podRing(t testing.TB, n int) *Ring {
	t.Helper()
	members := make([]Member, n)
	for i := range members {
		name := fmt.Sprintf("fedgate-%d.fedgate.monitoring.svc.cluster.local", i)
		members[i] = Member{Name: name, URL: "http://" + name + ":9096"}
	}
	r, err := New(members, "fedgate-0")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tenantIDs returns n cluster IDs of two realistic shapes: "cluster-<i>"
// and random (but fixed) UUIDs.
func tenantIDs(n int) map[string][]string {
	seq, uuids := make([]string, n), make([]string, n)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		seq[i] = fmt.Sprintf("cluster-%d", i)
		hi, lo := rnd.Uint64(), rnd.Uint64()
		hi = hi&^0xf000 | 0x4000     // version 4
		lo = lo&^(0xc<<60) | 0x8<<60 // RFC 4122 variant
		uuids[i] = fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", hi>>32, hi>>16&0xffff, hi&0xffff, lo>>48, lo&0xffffffffffff)
	}
	return map[string][]string{"sequential": seq, "uuid": uuids}
}

// TestOwnerGrowthMovesTenantsOnlyToNewMember: a pod added at the end of the
// ring takes about 1/n of the tenants, from every member, and no tenant
// moves between the old members.
func TestOwnerGrowthMovesTenantsOnlyToNewMember(t *testing.T) {
	for kind, ids := range tenantIDs(10000) {
		for n := 1; n < 16; n++ {
			before, after := podRing(t, n), podRing(t, n+1)
			newcomer := after.MemberList()[n]
			moved := 0
			for _, id := range ids {
				b, _ := before.Owner(id)
				a, _ := after.Owner(id)
				if a == b {
					continue
				}
				if a != newcomer {
					t.Fatalf("%s, %d→%d members: %s moved from %s to %s, not to the new member", kind, n, n+1, id, b.Name, a.Name)
				}
				moved++
			}
			if want := len(ids) / (n + 1); moved < want*8/10 || moved > want*12/10 {
				t.Errorf("%s, %d→%d members: %d tenants moved, want about %d", kind, n, n+1, moved, want)
			}
		}
	}
}

// TestOwnerShrinkMovesOnlyLastMembersTenants: removing the last member
// moves its tenants and no others.
func TestOwnerShrinkMovesOnlyLastMembersTenants(t *testing.T) {
	for kind, ids := range tenantIDs(10000) {
		for n := 2; n <= 16; n++ {
			before, after := podRing(t, n), podRing(t, n-1)
			leaver := before.MemberList()[n-1]
			for _, id := range ids {
				b, _ := before.Owner(id)
				a, _ := after.Owner(id)
				if b != leaver && a != b {
					t.Fatalf("%s, %d→%d members: %s moved from %s to %s though its owner stayed", kind, n, n-1, id, b.Name, a.Name)
				}
				if a == leaver {
					t.Fatalf("%s: %s still owned by the removed member", kind, id)
				}
			}
		}
	}
}

// TestOwnerSpread: every member owns its share of the tenants within ±10%.
// With 100,000 IDs a share of 1/16 is 6,250 ± 77 (one standard deviation),
// so ±10% is 8σ: a failure means a skewed hash, not bad luck. With 10,000
// IDs ±10% would be only 2.6σ at 16 members, a bound a fair hash misses by
// chance for some ID sets.
func TestOwnerSpread(t *testing.T) {
	for kind, ids := range tenantIDs(100000) {
		for n := 3; n <= 16; n++ {
			r := podRing(t, n)
			owned := make(map[string]int, n)
			for _, id := range ids {
				m, _ := r.Owner(id)
				owned[m.Name]++
			}
			mean := len(ids) / n
			for _, m := range r.MemberList() {
				if got := owned[m.Name]; got < mean*9/10 || got > mean*11/10 {
					t.Errorf("%s, %d members: %s owns %d tenants, want %d ± 10%%", kind, n, m.Name, got, mean)
				}
			}
		}
	}
}

func TestOwnerSingleMember(t *testing.T) {
	r, err := New([]Member{{Name: "gw-0", URL: "http://127.0.0.1:9096"}}, "gw-0")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "cluster-42"} {
		if m, self := r.Owner(id); !self || m.Name != "gw-0" {
			t.Fatalf("Owner(%q) = %v, %v", id, m, self)
		}
	}
	if _, err := New([]Member{{Name: "gw-0"}}, "gw-1"); !errors.Is(err, ErrSelfMissing) {
		t.Fatalf("a ring whose self is not a member: err = %v, want ErrSelfMissing", err)
	}
}

func TestOwnerAllocatesNothing(t *testing.T) {
	r := podRing(t, 64)
	if allocs := testing.AllocsPerRun(100, func() { r.Owner("cluster-42") }); allocs != 0 {
		t.Fatalf("Owner allocated %v times", allocs)
	}
}

// TestOwnerSelfAgreesWithMember: Owner says "self" exactly for the tenants
// Self owns.
func TestOwnerSelfAgreesWithMember(t *testing.T) {
	r := podRing(t, 5)
	for _, id := range tenantIDs(1000)["uuid"] {
		if m, self := r.Owner(id); self != (m == r.Self()) {
			t.Fatalf("Owner(%s) = %s, self=%v; Self() = %s", id, m.Name, self, r.Self().Name)
		}
	}
}

func TestNewSelfMatching(t *testing.T) {
	const fqdn = ".fedgate.monitoring.svc.cluster.local"
	names := func(ns ...string) []Member {
		ms := make([]Member, len(ns))
		for i, n := range ns {
			ms[i] = Member{Name: n, URL: "http://" + n}
		}
		return ms
	}
	for name, tc := range map[string]struct {
		members []Member
		self    string
		want    string // "" when New must fail
	}{
		"exact":                       {names("gw-0", "gw-1"), "gw-1", "gw-1"},
		"pod name matches srv target": {names("fedgate-0"+fqdn, "fedgate-1"+fqdn), "fedgate-1", "fedgate-1" + fqdn},
		"fqdn with trailing dot":      {names("fedgate-0"+fqdn, "fedgate-1"+fqdn), "fedgate-1" + fqdn + ".", "fedgate-1" + fqdn},
		"ip matches ip:port":          {names("10.0.0.1:9096", "10.0.0.2:9096"), "10.0.0.2", "10.0.0.2:9096"},
		"exact preferred to prefix":   {names("gw-0.a", "gw-0"), "gw-0", "gw-0"},
		"no digit continuation":       {names("fedgate-10"+fqdn, "fedgate-1"+fqdn), "fedgate-1", "fedgate-1" + fqdn},
		"fedgate-1 is not fedgate-10": {names("fedgate-0"+fqdn, "fedgate-10"+fqdn), "fedgate-1", ""},
		"other separator":             {names("gw-0-a", "gw-1"), "gw-0", ""},
		"ambiguous prefix":            {names("gw-0.a", "gw-0:9096"), "gw-0", ""},
		"missing":                     {names("gw-0", "gw-1"), "gw-2", ""},
		"empty self, no empty name":   {names(".a", ":b"), "", ""},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := New(tc.members, tc.self)
			switch {
			case tc.want == "" && err == nil:
				t.Fatalf("New(%q) chose %q, want an error", tc.self, r.Self().Name)
			case tc.want != "" && err != nil:
				t.Fatalf("New(%q): %v", tc.self, err)
			case tc.want != "" && r.Self().Name != tc.want:
				t.Fatalf("New(%q) chose %q, want %q", tc.self, r.Self().Name, tc.want)
			}
		})
	}
}

func TestNewRefusesDuplicatesAndCopies(t *testing.T) {
	if _, err := New([]Member{{Name: "gw-0"}, {Name: "gw-0"}}, "gw-0"); err == nil {
		t.Fatal("a ring with a duplicate member was built")
	}
	if _, err := New(nil, "gw-0"); err == nil {
		t.Fatal("an empty ring was built")
	}
	ms := []Member{{Name: "gw-0"}, {Name: "gw-1"}}
	r, err := New(ms, "gw-0")
	if err != nil {
		t.Fatal(err)
	}
	ms[1].Name = "changed"
	if r.MemberList()[1].Name != "gw-1" {
		t.Fatal("the ring shares its member list with the caller")
	}
}

func TestDrainingRingOwnsNothing(t *testing.T) {
	members := []Member{{Name: "gw-0", URL: "http://a"}, {Name: "gw-1", URL: "http://b"}}
	r, err := NewDraining(members, "gw-2")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Draining() || r.Self().Name != "gw-2" {
		t.Fatalf("Draining %v, Self %v", r.Draining(), r.Self())
	}
	for k := range 100 {
		if m, self := r.Owner(fmt.Sprintf("t-%d", k)); self || (m.Name != "gw-0" && m.Name != "gw-1") {
			t.Fatalf("a draining instance owns %v (self %v)", m, self)
		}
	}
	if _, err := NewDraining(members, "gw-1"); err == nil {
		t.Fatal("a member was allowed to drain")
	}
}
