package head

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// smallTables replaces the process-wide symbol tables, until the test
// ends, with tables of n symbols each, so that a test fills them quickly.
// Series made before must not be read meanwhile.
func smallTables(t testing.TB, n int) *tables {
	t.Helper()
	t.Cleanup(SwapSymbolTables(n))
	return symbols
}

// churnLabels returns the labels of series i: its id is its own (a
// literal), its pair value is shared with one other series (a symbol from
// the second sighting on).
func churnLabels(i int) []byte {
	return packed("__name__", "m", "id", strconv.Itoa(i), "pair", fmt.Sprintf("pair-%d", i/2))
}

// checkChurnLabels fails unless s decodes to the labels of the series it
// names by its id.
func checkChurnLabels(t testing.TB, s *Series) {
	got := s.AppendLabels(nil)
	i, err := strconv.Atoi(Labels(got).Get("id"))
	if err != nil || string(got) != string(churnLabels(i)) {
		t.Errorf("series decoded as %s", Labels(got))
	}
}

// describeTables describes g's tables, for failures.
func describeTables(g *tables) string {
	var b strings.Builder
	for slot := range g.slots {
		if t := g.slots[slot].Load(); t != nil {
			m := t.made.Load()
			fmt.Fprintf(&b, "slot %d: current %v, full %v, %d series made, %d held\n", slot, t == g.current.Load(), t.full.Load(), m>>32, uint32(m))
		}
	}
	return b.String()
}

// later moves the test clock a retention on and pushes every held series
// again then, so that none expires, and returns the new time.
func later(t *testing.T, h *Head, c *clock) int64 {
	t.Helper()
	c.t = c.t.Add(h.retention)
	now := c.t.UnixMilli()
	for _, s := range h.AppendAllSeries(nil) {
		appendKeyed(t, h, s.Tenant(), s.AppendLabels(nil), s.key.Load(), nil, Sample{now, 5})
	}
	return now
}

// tableOf returns the table a held series names.
func tableOf(s *Series) *symtab { return symbols.of(s.flags.Load()) }

// panicsRetired reports whether reading s's labels panics as a read after
// its table was retired.
func panicsRetired(s *Series) (retired bool) {
	defer func() {
		if r := recover(); r != nil {
			retired = strings.Contains(fmt.Sprint(r), "retired")
		}
	}()
	s.AppendLabels(nil)
	return false
}

// TestSymbolTablesRollOverAndRetire: a full table makes way for a new one;
// it is retired once its series are gone and the pins taken before are
// released, not before; its slot is then used again.
func TestSymbolTablesRollOverAndRetire(t *testing.T) {
	g := smallTables(t, 16)
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	first := g.current.Load()
	for i := range 40 {
		appendOne(t, h, "a", churnLabels(i), Sample{now, 1})
	}
	if n, _, _ := g.stats(); n != 2 || !first.full.Load() || g.current.Load() == first {
		t.Fatalf("%d tables after filling the first, want 2 with a new current one", n)
	}
	if first.index != nil {
		t.Fatal("a full table that is no longer current kept its index")
	}
	var old, kept []*Series
	for _, s := range h.AppendAllSeries(nil) {
		checkChurnLabels(t, s)
		if tableOf(s) == first {
			old = append(old, s)
		} else {
			kept = append(kept, s)
		}
	}
	if len(old) == 0 || len(kept) == 0 {
		t.Fatalf("%d series on the first table, %d on the second", len(old), len(kept))
	}
	// A reader pins, then gets a series; the series is removed, and with
	// it the last of its table's.
	pin := PinSymbols()
	reading := old[0]
	h.Remove(old)
	if n, _, _ := g.stats(); n != 2 {
		t.Fatalf("%d tables: the first was retired under a reader's pin", n)
	}
	checkChurnLabels(t, reading)
	// A pin taken after the table drained does not hold it.
	late := PinSymbols()
	pin.Release()
	g.retire()
	late.Release()
	if n, _, _ := g.stats(); n != 1 || g.slots[first.slot].Load() != nil {
		t.Fatalf("%d tables after the reader left, want 1 and the first's slot free", n)
	}
	if !panicsRetired(reading) {
		t.Fatal("a series of a retired table read without a pin did not panic")
	}
	for _, s := range kept {
		checkChurnLabels(t, s)
	}
	// The next rollover takes the free slot, under a new serial.
	second := g.current.Load()
	for i := 40; g.current.Load() == second; i++ {
		appendOne(t, h, "a", churnLabels(i), Sample{now, 1})
	}
	if third := g.current.Load(); third.slot != first.slot || third.serial == first.serial {
		t.Fatalf("new table in slot %d serial %d; the retired one was slot %d serial %d", third.slot, third.serial, first.slot, first.serial)
	}
	for _, s := range h.AppendAllSeries(nil) {
		checkChurnLabels(t, s)
	}
}

// TestSymbolTablesNoSlotFree: with every slot held by a table that held
// series name, the full current table stays, and new series store their
// new strings as literals.
func TestSymbolTablesNoSlotFree(t *testing.T) {
	g := smallTables(t, 16)
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	i := 0
	for n := 0; n < maxTables || !g.current.Load().full.Load(); n, _, _ = g.stats() {
		appendOne(t, h, "a", churnLabels(i), Sample{now, 1})
		i++
	}
	full := g.current.Load()
	for range 20 {
		appendOne(t, h, "a", churnLabels(i), Sample{now, 1})
		i++
	}
	if n, _, _ := g.stats(); n != maxTables || g.current.Load() != full {
		t.Fatalf("%d tables, current changed: %v", n, g.current.Load() != full)
	}
	for _, s := range h.AppendAllSeries(nil) {
		checkChurnLabels(t, s)
	}
}

// TestSymbolTableKeptForLateSeries: a series made on a table after it was
// found drained (its maker got the table before the rollover) keeps the
// table from being retired while it is held, and after it is removed
// again for as long as a reader pinned since may hold it.
func TestSymbolTableKeptForLateSeries(t *testing.T) {
	// drained returns tables whose first, no longer current, is waiting
	// to be retired under the pin of a maker who got it from forNew.
	drained := func() (*tables, *symtab, uint32) {
		g := newTables(4, maxSymbolBytes)
		maker := g.pins.take()
		t0 := g.forNew()
		for i := 0; !t0.full.Load(); i++ {
			for range admitAt {
				t0.intern(fmt.Sprint("v", i))
			}
		}
		if t1 := g.forNew(); t1 == t0 { // another maker rolls over
			t.Fatal("no rollover from a full table")
		}
		g.retire() // t0 is not current and no series names it yet
		if g.slots[t0.slot].Load() != t0 {
			t.Fatal("retired under a maker's pin")
		}
		return g, t0, maker
	}

	g, t0, maker := drained()
	t0.counted() // the maker's series, on t0
	g.pins.release(maker)
	g.retire()
	if g.slots[t0.slot].Load() != t0 {
		t.Fatal("a table a series names was retired")
	}

	g, t0, maker = drained()
	t0.counted()
	g.pins.release(maker)
	reader := g.pins.take() // gets the maker's series
	t0.uncounted()          // which is removed
	g.retire()
	if g.slots[t0.slot].Load() != t0 {
		t.Fatal("retired under the pin of a reader of a series made after the table was found drained")
	}
	g.pins.release(reader)
	g.retire()
	if g.slots[t0.slot].Load() != nil {
		t.Fatal("a drained table was not retired once nothing pinned it")
	}
}

// TestSymbolPinsPhases: a retirement waits for the pins taken before it
// flipped the phase, whatever the pins taken since, and a pin taken while
// a flip happens counts in one phase or the other, never neither.
func TestSymbolPinsPhases(t *testing.T) {
	var p pins
	before := p.take()
	old := p.flip()
	after := p.take()
	if old != before || after == before {
		t.Fatalf("phases: taken %d, flipped from %d, taken %d", before, old, after)
	}
	if p.n[old%2].v.Load() != 1 {
		t.Fatal("the pin from before the flip is not counted in its phase")
	}
	p.release(before)
	if p.n[old%2].v.Load() != 0 || p.n[after%2].v.Load() != 1 {
		t.Fatal("counts after release")
	}
	p.release(after)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				p.release(p.take())
			}
		})
	}
	for range 1000 {
		ph := p.take()
		old := p.flip()
		if old != ph {
			t.Fatalf("flipped from %d, pinned in %d", old, ph)
		}
		if p.n[old%2].v.Load() < 1 {
			t.Fatal("a held pin is not counted in its phase")
		}
		p.release(ph)
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	if p.n[0].v.Load() != 0 || p.n[1].v.Load() != 0 {
		t.Fatalf("counts %d, %d with no pin held", p.n[0].v.Load(), p.n[1].v.Load())
	}
}

// TestSymbolTablesChurn: series come and go through many table rollovers,
// a few of them for good, while pinned readers decode every series they
// found, removed or moved meanwhile or not (-race checks the orderings).
// The tables never exceed their bound, and once the churned series are
// gone, the long-lived ones have been moved off the old tables and only
// the current one is left.
func TestSymbolTablesChurn(t *testing.T) {
	g := smallTables(t, 32)
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	const total, window, lasting = 3000, 60, 200 // every lasting'th series stays
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			var ss []*Series
			for {
				select {
				case <-done:
					return
				default:
				}
				pin := PinSymbols()
				ss = h.AppendAllSeries(ss[:0])
				runtime.Gosched() // let the writer remove or move some
				for _, s := range ss {
					checkChurnLabels(t, s)
				}
				pin.Release()
			}
		})
	}
	churned := func(s *Series, upTo int) bool {
		id, _ := strconv.Atoi(s.Iter().Get("id"))
		return id%lasting != 0 && id <= upTo
	}
	rollovers, maxSeen := 0, 0
	cur := g.current.Load()
	// Time passes a tenth of a retention every 20 series; the lasting
	// series are pushed on, and the others expire if not removed first.
	for i := range total {
		if i%20 == 0 {
			c.t = c.t.Add(h.retention / 10)
			now = c.t.UnixMilli()
			for k := 0; k < i; k += lasting {
				appendOne(t, h, "a", churnLabels(k), Sample{now, 1})
			}
		}
		appendOne(t, h, "a", churnLabels(i), Sample{now, 1})
		var gone []*Series
		for _, s := range h.AppendFamily(nil, "m") {
			if churned(s, i-window) {
				gone = append(gone, s)
			}
		}
		h.Remove(gone)
		if i%20 == 0 {
			h.GC() // moves the lasting series off sparse tables
		}
		if n, _, _ := g.stats(); n > maxSeen {
			maxSeen = n
		}
		if g.current.Load() != cur {
			rollovers++
			cur = g.current.Load()
		}
	}
	close(done)
	wg.Wait()
	// Pinned readers delay retirements, so how many rollovers there are
	// depends on timing; more than maxTables means slots were freed and
	// used again.
	if rollovers <= maxTables || maxSeen > maxTables {
		t.Fatalf("%d rollovers, up to %d tables", rollovers, maxSeen)
	}
	var gone []*Series
	for _, s := range h.AppendFamily(nil, "m") {
		if churned(s, total) {
			gone = append(gone, s)
		}
	}
	h.Remove(gone)
	for range 2 { // the first pass may only see the last tables stop being current
		h.GC()
		later(t, h, c)
		h.GC() // moves
	}
	last := h.AppendAllSeries(nil)
	symbolized := 0
	for _, s := range last {
		checkChurnLabels(t, s)
		if int(s.nlab) < len(s.AppendLabels(nil)) {
			symbolized++
		}
	}
	if len(last) != total/lasting || symbolized == 0 {
		t.Fatalf("%d series left (want %d), %d of them with symbols", len(last), total/lasting, symbolized)
	}
	if n, _, _ := g.stats(); n != 1 {
		t.Fatalf("%d tables with only the lasting series held, want only the current one:\n%s", n, describeTables(g))
	}
}

// BenchmarkPodChurn: waves of pods replace each other, as in a cluster
// whose pods are redeployed; each wave's series replace the last's, but
// for the pods that last (one in lastEvery; none for 0), which stay. Every
// pod brings two strings of its own (its name and address), which its
// series share, so each wave brings 2*pods new symbols. b.N waves, with a
// GC after each, a wave a (head) minute with a retention of ten; it
// reports the heap per held series after the last, and the symbol tables
// held then (-benchtime=80x goes through several).
func BenchmarkPodChurn(b *testing.B) {
	b.Run("lasting=none", func(b *testing.B) { benchmarkPodChurn(b, 0) })
	b.Run("lasting=5%", func(b *testing.B) { benchmarkPodChurn(b, 20) })
}

func benchmarkPodChurn(b *testing.B, lastEvery int) {
	const pods, perPod = 2000, 25
	g := smallTables(b, maxSymbols)
	c := &clock{t: time.UnixMilli(1_000_000_000)}
	h := New(Options{Retention: 10 * time.Minute, Now: c.now}, nil)
	batch := &Batch{Tenant: "a", Series: make([]BatchSeries, 0, pods*perPod)}
	var prev, all []*Series
	var lasting [][]byte // labels of the series of the pods that last
	b.ReportAllocs()
	for wave := range b.N {
		c.t = c.t.Add(time.Minute)
		samples := []Sample{{c.t.UnixMilli(), 1}}
		batch.Series = batch.Series[:0]
		for _, lbls := range lasting {
			batch.Series = append(batch.Series, BatchSeries{Labels: lbls, Samples: samples})
		}
		for p := range pods {
			pod := fmt.Sprintf("api-%08x-%05d", wave, p)
			addr := fmt.Sprintf("10.%d.%d.%d:8080", wave%256, p/256, p%256)
			for m := range perPod {
				lbls := packed("__name__", fmt.Sprintf("metric_%d", m), "instance", addr, "job", "api", "namespace", "default", "pod", pod)
				batch.Series = append(batch.Series, BatchSeries{Labels: lbls, Samples: samples})
				if lastEvery > 0 && p%lastEvery == 0 {
					lasting = append(lasting, lbls)
				}
			}
		}
		if err := h.Append(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
		h.Remove(prev)
		h.GC()
		all = h.AppendAllSeries(all[:0])
		prev = prev[:0]
		for _, s := range all {
			pod := s.Iter().Get("pod")
			if p, _ := strconv.Atoi(pod[len(pod)-5:]); lastEvery == 0 || p%lastEvery != 0 {
				prev = append(prev, s)
			}
		}
	}
	b.StopTimer()
	clear(batch.Series)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	tables, n, bytes := g.stats()
	b.ReportMetric(float64(ms.HeapAlloc)/float64(h.NumSeries()), "heap-B/series")
	b.ReportMetric(float64(h.NumSeries()), "series")
	b.ReportMetric(float64(tables), "tables")
	b.ReportMetric(float64(n), "symbols")
	b.ReportMetric(float64(bytes)/(1<<20), "symbol-MiB")
	clear(all)
	runtime.KeepAlive(prev)
}

// pastFirstTable makes a head and symbol tables of 16 symbols, and pushes
// churnLabels(i) for i from 0 (under memo key i+1, value i) until the first table
// has made way for a second; it returns the series on the first.
func pastFirstTable(t *testing.T) (g *tables, h *Head, c *clock, first *symtab, old []*Series) {
	t.Helper()
	g = smallTables(t, 16)
	h, c = newTestHead(t)
	now := c.t.UnixMilli()
	first = g.current.Load()
	for i := range 40 {
		appendKeyed(t, h, "a", churnLabels(i), uint64(i+1), nil, Sample{now, float64(i)})
	}
	if g.current.Load() == first {
		t.Fatal("no rollover")
	}
	for _, s := range h.AppendAllSeries(nil) {
		if tableOf(s) == first {
			old = append(old, s)
		}
	}
	return g, h, c, first, old
}

// TestSparseTableSeriesMoved: the few series still held on a table whose
// others are gone are moved to the current table, keeping their ref,
// labels, sample, log marks, family and memo entry; the old table is then
// retired, and Remove of a moved series removes its replacement.
func TestSparseTableSeriesMoved(t *testing.T) {
	g, h, c, first, old := pastFirstTable(t)
	if len(old) < 2*sparseShare {
		t.Fatalf("%d series on the first table, too few to test", len(old))
	}
	a, b := old[0], old[1]
	a.SetLogged()
	a.SetBase(7)
	h.Remove(old[2:])
	h.GC() // sees that the first table is no longer current
	if a.Removed() || h.Sparse().slots != 0 {
		t.Fatal("series moved before a retention passed since their table stopped being current")
	}
	now := later(t, h, c) // a and b are still pushed
	if sp := h.Sparse(); sp.slots != 1<<first.slot || !sp.Holds(a) {
		t.Fatalf("sparse tables %b, want the first's slot %d", sp.slots, first.slot)
	}
	before := h.NumSeries()

	pin := PinSymbols() // a reader holding a
	h.GC()
	if !a.Removed() || !b.Removed() || a.flags.Load()&flagMoved == 0 {
		t.Fatal("the series left on the sparse table were not moved")
	}
	checkChurnLabels(t, a)
	if n, _, _ := g.stats(); n != 2 {
		t.Fatalf("%d tables: the first was retired under a reader's pin", n)
	}
	if h.NumSeries() != before {
		t.Fatalf("%d series after the move, %d before", h.NumSeries(), before)
	}
	byRef := map[uint64]*Series{}
	for _, s := range h.AppendAllSeries(nil) {
		byRef[s.Ref()] = s
	}
	inFamily := map[*Series]bool{}
	for _, s := range h.AppendFamily(nil, "m") {
		inFamily[s] = true
	}
	for _, o := range []*Series{a, b} {
		n := byRef[o.Ref()]
		if n == nil || n == o || tableOf(n) != g.current.Load() {
			t.Fatalf("series %d: not replaced on the current table", o.Ref())
		}
		if string(n.AppendLabels(nil)) != string(o.AppendLabels(nil)) || n.Tenant() != o.Tenant() {
			t.Fatalf("series %d: moved as %s", o.Ref(), n.Labels())
		}
		nt, nv := n.Latest()
		ot, ov := o.Latest()
		if nt != ot || nv != ov || n.Logged() != o.Logged() || n.Base() != o.Base() {
			t.Fatalf("series %d: sample, log or base marks not carried over", o.Ref())
		}
		if !inFamily[n] || inFamily[o] {
			t.Fatalf("series %d: its family holds the old series", o.Ref())
		}
		if got := h.Memo("a").Get(o.key.Load()); got != n {
			t.Fatalf("series %d: the memo gives %p, want the replacement %p", o.Ref(), got, n)
		}
	}
	// Removing a moved series (as a handoff that found it before the move
	// would, under its pin) removes its replacement.
	h.Remove([]*Series{a})
	if h.NumSeries() != before-1 || !byRef[a.Ref()].Removed() {
		t.Fatalf("%d series after removing a moved one, want %d", h.NumSeries(), before-1)
	}
	pin.Release()
	h.GC()
	if n, _, _ := g.stats(); n != 1 {
		t.Fatalf("%d tables once nothing held the first, want 1", n)
	}
	// New samples go to the replacement.
	appendKeyed(t, h, "a", byRef[b.Ref()].AppendLabels(nil), b.key.Load(), nil, Sample{now + 1, -1})
	if ts, v := byRef[b.Ref()].Latest(); ts != now+1 || v != -1 {
		t.Fatalf("the replacement holds (%d, %v) after a new sample", ts, v)
	}
}

// TestDenseTableSeriesStay: a table that is not current but still holds
// most of the series made on it is left alone.
func TestDenseTableSeriesStay(t *testing.T) {
	_, h, c, _, old := pastFirstTable(t)
	h.Remove(old[:len(old)/2])
	h.GC()
	later(t, h, c)
	h.GC()
	for _, s := range old[len(old)/2:] {
		if s.Removed() {
			t.Fatal("a series of a table holding half its series was moved")
		}
	}
}

// TestMovedSeriesFoundByRef: Held and Remove take a moved series for the
// series that replaced it, and for nothing once that is gone, even if a
// series of the same labels is made again.
func TestMovedSeriesFoundByRef(t *testing.T) {
	_, h, c, _, old := pastFirstTable(t)
	h.Remove(old[2:])
	a, b := old[0], old[1]
	if h.Held(a) != a {
		t.Fatal("a held series is not its own")
	}
	h.GC()
	now := later(t, h, c)
	pin := PinSymbols()
	defer pin.Release()
	h.GC()
	na, nb := h.Held(a), h.Held(b)
	if !a.Removed() || na == nil || na == a || na.Ref() != a.Ref() || nb == nil || nb.Ref() != b.Ref() {
		t.Fatalf("moved series resolve to %v and %v", na, nb)
	}
	// b's replacement expires; a series of b's labels comes back.
	lbls := b.AppendLabels(nil)
	h.Remove([]*Series{nb})
	if h.Held(b) != nil {
		t.Fatal("a moved series whose replacement is gone still resolves")
	}
	appendOne(t, h, "a", lbls, Sample{now + 1, 2})
	n := h.NumSeries()
	h.Remove([]*Series{b})
	if h.NumSeries() != n || h.Held(b) != nil {
		t.Fatal("Remove of a moved series removed a newer series of its labels")
	}
	h.Remove([]*Series{a})
	if h.NumSeries() != n-1 || !na.Removed() {
		t.Fatal("Remove of a moved series left its replacement")
	}
}

// TestSparseWaitsFromTheRollover: a table is sparse only a wait after a
// walk first saw it make way for a new one, whatever the walks saw while
// the new one was being put in place; and only for series of that very
// table, not of a later one in its slot.
func TestSparseWaitsFromTheRollover(t *testing.T) {
	g := newTables(4, maxSymbolBytes)
	t0 := g.forNew()
	for i := 0; !t0.full.Load(); i++ {
		for range admitAt {
			t0.intern(fmt.Sprint("v", i))
		}
	}
	for range 8 {
		t0.counted()
	}
	for range 7 {
		t0.uncounted() // one of the eight is held
	}
	if sp := g.sparse(1000, 10); sp.slots != 0 || t0.seenRolled {
		t.Fatal("a current table seen as made way")
	}
	t1 := g.forNew()
	g.current.Store(t0) // as between open's two stores
	g.sparse(1000, 10)
	g.current.Store(t1)
	if t1.seenRolled || !t0.seenRolled {
		t.Fatal("the stop recorded for the new table, or not for the old")
	}
	if sp := g.sparse(1009, 10); sp.slots != 0 {
		t.Fatal("sparse before the wait")
	}
	sp := g.sparse(1010, 10)
	if sp.slots != 1<<t0.slot {
		t.Fatalf("sparse slots %b after the wait, want %b", sp.slots, 1<<t0.slot)
	}
	var s, later Series
	s.flags.Store(t0.tag())
	later.flags.Store(t0.tag() + 1<<serialShift) // a later table in t0's slot
	if !sp.Holds(&s) || sp.Holds(&later) {
		t.Fatal("Holds does not go by the table's serial")
	}
}
