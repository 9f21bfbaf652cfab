package head

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// decodeAll decodes tokens made by t back to packed labels.
func (t *symtab) decodeAll(tokens []byte) []byte {
	var out []byte
	for rest := string(tokens); rest != ""; {
		var name, value string
		name, rest = t.nextToken(rest)
		value, rest = t.nextToken(rest)
		out = AppendLabel(out, name, value)
	}
	return out
}

// randomLabels makes a sorted packed label set whose values repeat across
// calls, are unique, are long (over maxSymbolLen), or need two-byte
// lengths.
func randomLabels(rng *rand.Rand) []byte {
	var kv []string
	kv = append(kv, "__name__", fmt.Sprintf("metric_%d", rng.IntN(5)))
	if rng.IntN(2) == 0 {
		kv = append(kv, "a_long_value", strings.Repeat("x", maxSymbolLen+1+rng.IntN(200)))
	}
	kv = append(kv, "job", []string{"api", "db", "cache"}[rng.IntN(3)])
	kv = append(kv, "pod", fmt.Sprintf("pod-%x", rng.Uint64()))
	if rng.IntN(3) == 0 {
		kv = append(kv, "zone", "")
	}
	return packed(kv...)
}

func TestTokensRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tab := new(symtab)
	for i := range 2000 {
		lbls := randomLabels(rng)
		tokens := tab.appendTokens(nil, Labels(lbls))
		if got := tab.decodeAll(tokens); string(got) != string(lbls) {
			t.Fatalf("label set %d: %s came back as %s", i, Labels(lbls), Labels(got))
		}
	}
	// Names and repeated values became symbols; unique and long values
	// did not.
	for _, s := range []string{"__name__", "a_long_value", "job", "pod", "metric_0", "api"} {
		if _, ok := tab.index[s]; !ok {
			t.Errorf("%q is not a symbol", s)
		}
	}
	for s := range tab.index {
		if strings.HasPrefix(s, "pod-") || strings.HasPrefix(s, "xxx") {
			t.Errorf("%q (seen once, or too long) is a symbol", s)
		}
	}
}

func TestSeriesLabelsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 2000 {
		lbls := randomLabels(rng)
		s := newSeries(lbls)
		if got := s.AppendLabels(nil); string(got) != string(lbls) {
			t.Fatalf("series %d: %s came back as %s", i, Labels(lbls), Labels(got))
		}
		if !s.HasLabels(lbls) {
			t.Fatalf("series %d: HasLabels of its own labels is false", i)
		}
		// Any change is told apart: a label less, one more, another value.
		other := randomLabels(rng)
		if s.HasLabels(other) != (string(other) == string(lbls)) {
			t.Fatalf("series %d: HasLabels(%s) for %s", i, Labels(other), Labels(lbls))
		}
		if n := len(lbls); n > 0 && s.HasLabels(lbls[:n-1]) {
			t.Fatalf("series %d: HasLabels of its labels cut short", i)
		}
		if s.HasLabels(append(append([]byte{}, lbls...), packed("zz", "1")...)) {
			t.Fatalf("series %d: HasLabels with a label more", i)
		}
		if got, want := s.metricName(), Labels(lbls).Get("__name__"); got != want {
			t.Fatalf("series %d: metric name %q, want %q", i, got, want)
		}
	}
}

// TestSymbolTableBound fills a table: past its bound strings stay
// literals, and everything still round-trips.
func TestSymbolTableBound(t *testing.T) {
	tab := new(symtab)
	var sets [][]byte
	for i := 0; tab.n < maxSymbols; i++ {
		lbls := packed(fmt.Sprintf("n%d", i), "v")
		tab.appendTokens(nil, Labels(lbls))
		sets = append(sets, lbls)
	}
	n, bytes := tab.stats()
	lbls := packed("a_new_name", "v")
	tokens := tab.appendTokens(nil, Labels(lbls))
	if got := tab.decodeAll(tokens); string(got) != string(lbls) {
		t.Fatalf("past the bound: %s came back as %s", Labels(lbls), Labels(got))
	}
	if n2, bytes2 := tab.stats(); n2 != n || bytes2 != bytes || n2 != maxSymbols {
		t.Fatalf("table grew past its bound: %d symbols, %d bytes", n2, bytes2)
	}
	if _, ok := tab.index["a_new_name"]; ok {
		t.Fatal("a name became a symbol in a full table")
	}
	for _, lbls := range sets[:100] {
		if got := tab.decodeAll(tab.appendTokens(nil, Labels(lbls))); string(got) != string(lbls) {
			t.Fatalf("%s came back as %s", Labels(lbls), Labels(got))
		}
	}
}

// TestSymbolsUnderConcurrency creates series from many goroutines at once
// (under -race: symbol reads take no lock) and checks every one.
func TestSymbolsUnderConcurrency(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for range 500 {
				lbls := randomLabels(rng)
				s := newSeries(lbls)
				if got := s.AppendLabels(nil); string(got) != string(lbls) {
					t.Errorf("%s came back as %s", Labels(lbls), Labels(got))
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestHasLabelsOfAnyBytes: HasLabels compares, never trusts: any bytes
// give an answer, never a panic, and only the series' own labels give
// true.
func TestHasLabelsOfAnyBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	s := newSeries(packed("__name__", "up", "job", strings.Repeat("j", 200)))
	own := s.AppendLabels(nil)
	for range 20000 {
		b := append([]byte{}, own[:rng.IntN(len(own)+1)]...)
		for range rng.IntN(4) {
			b = append(b, byte(rng.IntN(256)))
		}
		if rng.IntN(2) == 0 && len(b) > 0 {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		if s.HasLabels(b) != (string(b) == string(own)) {
			t.Fatalf("HasLabels(%x) = %v", b, !(string(b) == string(own)))
		}
	}
}
