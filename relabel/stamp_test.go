package relabel

import (
	"slices"
	"testing"

	"github.com/fedgate/fedgate/gateway/remotewrite"
)

type L = remotewrite.Label

func l(name, value string) L { return L{Name: name, Value: value} }

func TestStampCluster(t *testing.T) {
	cases := []struct {
		name       string
		in         []L
		want       []L
		overwrites bool
	}{
		{"added when absent", []L{l("__name__", "up")}, []L{l("__name__", "up"), l("cluster_id", "a")}, false},
		{"forged value replaced", []L{l("cluster_id", "b"), l("__name__", "up")}, []L{l("__name__", "up"), l("cluster_id", "a")}, true},
		{"same value is no overwrite", []L{l("__name__", "up"), l("cluster_id", "a")}, []L{l("__name__", "up"), l("cluster_id", "a")}, false},
		{"every copy removed", []L{l("cluster_id", "a"), l("x", "1"), l("cluster_id", "c")}, []L{l("x", "1"), l("cluster_id", "a")}, true},
	}
	for _, c := range cases {
		got, over := StampCluster(slices.Clone(c.in), "cluster_id", "a")
		if !slices.Equal(got, c.want) || over != c.overwrites {
			t.Errorf("%s: got %v, %v; want %v, %v", c.name, got, over, c.want, c.overwrites)
		}
	}
}

func TestStampClusterDoesNotAllocate(t *testing.T) {
	ls := make([]L, 0, 8)
	allocs := testing.AllocsPerRun(100, func() {
		ls = append(ls[:0], l("__name__", "up"), l("cluster_id", "b"))
		ls, _ = StampCluster(ls, "cluster_id", "a")
	})
	if allocs != 0 {
		t.Fatalf("StampCluster allocated %v times", allocs)
	}
}
