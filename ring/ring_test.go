package ring

import (
	"fmt"
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
	if _, err := New([]Member{{Name: "gw-0"}}, "gw-1"); err == nil {
		t.Fatal("a ring whose self is not a member was built")
	}
	if allocs := testing.AllocsPerRun(100, func() { r.Owner("cluster-42") }); allocs != 0 {
		t.Fatalf("Owner allocated %v times", allocs)
	}
}
