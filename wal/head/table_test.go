package head

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestSeriesTableMatchesAMap drives a table and a map with the same random
// inserts, lookups and removals, with hashes drawn from a small set so that
// runs, wrap-around and equal hashes of different labels are the common
// case, and checks after every step that both hold the same series.
func TestSeriesTableMatchesAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		var tab seriesTable
		want := map[string]*Series{}
		hashes := 1 + rng.IntN(40)
		for step := range 3000 {
			key := fmt.Sprint(rng.IntN(300))
			hash := uint64(rng.IntN(hashes)) << stripeBits
			if h, ok := hashOf(want, key); ok {
				hash = h
			}
			switch rng.IntN(3) {
			case 0, 1:
				if want[key] == nil {
					s := newSeries(packed("__name__", key))
					s.hash = hash
					tab.insert(s)
					want[key] = s
				}
			case 2:
				s := want[key]
				if s == nil {
					s = newSeries(packed("__name__", key))
					s.hash = hash
				}
				if got := tab.remove(s); got != (want[key] != nil) {
					t.Fatalf("round %d step %d: remove(%s) = %v", round, step, key, got)
				}
				delete(want, key)
			}
			if tab.n != len(want) || tab.n*4 > len(tab.slots)*3 {
				t.Fatalf("round %d step %d: n %d, %d slots, want %d series", round, step, tab.n, len(tab.slots), len(want))
			}
			if got := tab.get(hash, packed("__name__", key)); got != want[key] {
				t.Fatalf("round %d step %d: get(%s) = %v, want %v", round, step, key, got, want[key])
			}
			if step%16 != 0 {
				continue
			}
			for k, s := range want {
				if got := tab.get(s.hash, packed("__name__", k)); got != s {
					t.Fatalf("round %d step %d: get(%s) = %v, want %v", round, step, k, got, s)
				}
			}
			if got := tab.get(hash, packed("__name__", "absent")); got != nil {
				t.Fatalf("round %d step %d: found an absent series", round, step)
			}
			if all := tab.appendAll(nil); len(all) != len(want) {
				t.Fatalf("round %d step %d: appendAll gave %d series, want %d", round, step, len(all), len(want))
			}
		}
		// Mass expiry: the table shrinks as it empties and still finds
		// every series left.
		peak := len(tab.slots)
		for k, s := range want {
			if !tab.remove(s) {
				t.Fatalf("round %d: %s not removed", round, k)
			}
			delete(want, k)
			for k2, s2 := range want {
				if tab.get(s2.hash, packed("__name__", k2)) != s2 {
					t.Fatalf("round %d: %s lost after removals", round, k2)
				}
				break
			}
		}
		if tab.n != 0 || len(tab.slots) >= peak && peak > 8 {
			t.Fatalf("round %d: emptied table has n %d and %d slots (peak %d)", round, tab.n, len(tab.slots), peak)
		}
	}
}

func hashOf(m map[string]*Series, key string) (uint64, bool) {
	if s := m[key]; s != nil {
		return s.hash, true
	}
	return 0, false
}

// TestSeriesSize pins the head's per-series struct, which every held
// series' labels follow in one allocation: 64 bytes, a multiple of 8.
func TestSeriesSize(t *testing.T) {
	if got := unsafe.Sizeof(Series{}); got > 64 || got%8 != 0 {
		t.Fatalf("Series is %d bytes, want at most 64 and a multiple of 8", got)
	}
}
