package head

import (
	"encoding/binary"
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
	tab := newSymtab()
	for i := range 2000 {
		lbls := randomLabels(rng)
		tokens := tab.appendTokens(nil, Labels(lbls))
		if got := tab.decodeAll(tokens); string(got) != string(lbls) {
			t.Fatalf("label set %d: %s came back as %s", i, Labels(lbls), Labels(got))
		}
	}
	// Names and repeated values became symbols; unique and long values
	// did not.
	for _, s := range []string{"__name__", "a_long_value", "job", "pod", "metric_0", "api", "zone"} {
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
		if !s.hasLabels(lbls) {
			t.Fatalf("series %d: hasLabels of its own labels is false", i)
		}
		// Any change is told apart: a label less, one more, another value.
		other := randomLabels(rng)
		if s.hasLabels(other) != (string(other) == string(lbls)) {
			t.Fatalf("series %d: hasLabels(%s) for %s", i, Labels(other), Labels(lbls))
		}
		if n := len(lbls); n > 0 && s.hasLabels(lbls[:n-1]) {
			t.Fatalf("series %d: hasLabels of its labels cut short", i)
		}
		if s.hasLabels(append(append([]byte{}, lbls...), packed("zz", "1")...)) {
			t.Fatalf("series %d: hasLabels with a label more", i)
		}
		if got, want := s.metricName(), Labels(lbls).Get("__name__"); got != want {
			t.Fatalf("series %d: metric name %q, want %q", i, got, want)
		}
	}
}

// TestSymbolTableBound fills a table: past its bound strings stay
// literals, and everything still round-trips.
func TestSymbolTableBound(t *testing.T) {
	tab := newSymtab()
	var sets [][]byte
	for i := 0; !tab.full.Load(); i++ {
		lbls := packed(fmt.Sprintf("n%d", i), "v")
		for range admitAt { // the last sighting makes the symbols
			tab.appendTokens(nil, Labels(lbls))
		}
		sets = append(sets, lbls)
	}
	n, bytes := tab.stats()
	lbls := packed("a_new_name", "v")
	var tokens []byte
	for range admitAt {
		tokens = tab.appendTokens(nil, Labels(lbls))
	}
	if got := tab.decodeAll(tokens); string(got) != string(lbls) {
		t.Fatalf("past the bound: %s came back as %s", Labels(lbls), Labels(got))
	}
	if n2, bytes2 := tab.stats(); n2 != n || bytes2 != bytes || n2 != maxSymbols {
		t.Fatalf("table grew past its bound: %d symbols, %d bytes", n2, bytes2)
	}
	if _, ok := tab.index["a_new_name"]; ok {
		t.Fatal("a name became a symbol in a full table")
	}
	// Every id decodes, one-, two- and three-byte tokens alike, and no
	// token is longer than the packed form.
	for _, lbls := range sets {
		tokens := tab.appendTokens(nil, Labels(lbls))
		if got := tab.decodeAll(tokens); string(got) != string(lbls) {
			t.Fatalf("%s came back as %s", Labels(lbls), Labels(got))
		}
		if len(tokens) > len(lbls) {
			t.Fatalf("%s: %d bytes of tokens, %d packed", Labels(lbls), len(tokens), len(lbls))
		}
	}
}

// TestTableFullTakesNoLock: once full, a string not in the table is a
// literal without the table's write lock (which every new series' lookups
// would otherwise queue behind).
func TestTableFullTakesNoLock(t *testing.T) {
	tab := newSymtab()
	tab.full.Store(true)
	tab.mu.RLock() // a writer would wait for this forever
	defer tab.mu.RUnlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2 {
			if _, ok := tab.intern("fresh"); ok {
				t.Error("a full table made a symbol")
			}
		}
	}()
	<-done
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

// TestHasLabelsOfAnyBytes: hasLabels compares, never trusts: any bytes
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
		if s.hasLabels(b) != (string(b) == string(own)) {
			t.Fatalf("hasLabels(%x) = %v", b, !(string(b) == string(own)))
		}
	}
}

// TestHasLabelsWantsTheShortestForm: a length in an overlong varint is
// not the packed form, whose bytes (and hash) are the series' identity.
func TestHasLabelsWantsTheShortestForm(t *testing.T) {
	s := newSeries(packed("a", "b"))
	if !s.hasLabels([]byte{1, 'a', 1, 'b'}) {
		t.Fatal("own labels refused")
	}
	if s.hasLabels([]byte{0x81, 0x00, 'a', 0x01, 'b'}) || s.hasLabels([]byte{1, 'a', 0x81, 0x00, 'b'}) {
		t.Fatal("an overlong length matched")
	}
}

// TestNewSeriesAllocatesOnce: a new series is one allocation, its labels'
// symbols known or not.
func TestNewSeriesAllocatesOnce(t *testing.T) {
	lbls := packed("__name__", "up", "job", "api", "pod", "pod-1234")
	newSeries(lbls)
	newSeries(lbls)
	if n := testing.AllocsPerRun(100, func() { newSeries(lbls) }); n != 1 {
		t.Fatalf("%v allocations per new series", n)
	}
}

// TestSymbolsReadAcrossGoroutines: series made with brand-new symbols by
// one goroutine are decoded by another that finds them through the head
// (-race checks the symbol reads are ordered after the writes).
func TestSymbolsReadAcrossGoroutines(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 3000 {
			k := i / admitAt // each name and value admitAt times: the last makes symbols
			appendOne(t, h, "a", packed("__name__", "m", fmt.Sprintf("n%d", k), fmt.Sprintf("v%d", k), "i", fmt.Sprint(i)), Sample{now, 1})
		}
	}()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		for _, s := range h.AppendAllSeries(nil) {
			lbls := s.AppendLabels(nil)
			if !s.hasLabels(lbls) || Labels(lbls).Get("__name__") != "m" {
				t.Fatalf("series decoded as %s", Labels(lbls))
			}
		}
	}
	if h.NumSeries() != 3000 {
		t.Fatalf("%d series", h.NumSeries())
	}
}

// TestFamiliesWithoutOrBeforeName: a series without __name__, or with names
// sorting before it, joins and leaves its family like any other.
func TestFamiliesWithoutOrBeforeName(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	appendOne(t, h, "a", packed("A", "1", "__name__", "m"), Sample{now, 1})
	appendOne(t, h, "a", packed("x", "1"), Sample{now, 1})
	if got := h.AppendFamilyNames(nil); len(got) != 2 || got[0] != "" || got[1] != "m" {
		t.Fatalf("families %q", got)
	}
	h.Remove(h.AppendAllSeries(nil))
	if got := h.AppendFamilyNames(nil); len(got) != 0 {
		t.Fatalf("families %q after removing every series", got)
	}
}

// TestAdmittedAtTheSecondSighting: a string becomes a symbol at its
// admitAt'th sighting, not before, and is found from then on.
func TestAdmittedAtTheSecondSighting(t *testing.T) {
	tab := newSymtab()
	for i := 1; i < admitAt; i++ {
		if _, ok := tab.intern("kube-system"); ok {
			t.Fatalf("a symbol at sighting %d", i)
		}
	}
	id, ok := tab.intern("kube-system")
	if !ok || tab.symbol(id) != "kube-system" {
		t.Fatalf("not a symbol at sighting %d", admitAt)
	}
	if id2, ok := tab.intern("kube-system"); !ok || id2 != id {
		t.Fatal("found under another id")
	}
}

// TestNextTokenForms: the inline decoding of one- and two-byte tokens
// agrees with the general one, for literals of every header width and for
// symbols of one- and two-byte ids, and leaves the right rest.
func TestNextTokenForms(t *testing.T) {
	tab := newSymtab()
	for i := range 100 {
		for range admitAt {
			tab.intern(fmt.Sprintf("next-token-form-%d", i))
		}
	}
	n, _ := tab.stats()
	if n != 100 {
		t.Fatalf("%d symbols in the table, want 100", n)
	}
	var toks []string
	for _, l := range []int{0, 1, 62, 63, 64, 65, 127, 128, 8190, 8191, 8192, 9000} {
		toks = append(toks, string(binary.AppendUvarint(nil, uint64(l)<<1|1))+strings.Repeat("v", l))
	}
	for id := range uint64(n) {
		toks = append(toks, string(binary.AppendUvarint(nil, id<<1)))
	}
	for _, tok := range toks {
		in := tok + "\x03ab" // a literal "a", then "b"
		s, rest := tab.nextToken(in)
		ws, wrest := tab.nextTokenLong(in)
		if s != ws || rest != wrest || rest != "\x03ab" {
			t.Fatalf("token % x: nextToken gave (%q, %q), the general decoding (%q, %q)", tok[:min(len(tok), 4)], s, rest, ws, wrest)
		}
	}
}
