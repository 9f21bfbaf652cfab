package ring

import (
	"fmt"
	"testing"
)

// BenchmarkOwner is the per-request ring lookup: xxhash of the tenant ID and
// the jump hash over the members. It must stay allocation-free; the target
// is ≤ 50 ns.
func BenchmarkOwner(b *testing.B) {
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("cluster-%d", i)
	}
	for _, n := range []int{3, 64} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := podRing(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Owner(ids[i&(len(ids)-1)])
				i++
			}
		})
	}
}
