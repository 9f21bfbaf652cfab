package head

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// appendKeyed appends one series with a memo key (and a known series, if
// not nil) and returns the series Prepare resolved it to.
func appendKeyed(t *testing.T, h *Head, tenant string, lbls []byte, key uint64, known *Series, smp Sample) *Series {
	t.Helper()
	b := &Batch{Tenant: tenant, Series: []BatchSeries{{Labels: lbls, Samples: []Sample{smp}, Key: key, Known: known}}}
	ss, err := h.Prepare(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Commit(b, ss)
	return ss[0]
}

// appendNumbered appends n series of tenant "a", up{i="0"} and on, each
// under memo key i+1 if keyed, and returns them.
func appendNumbered(t *testing.T, h *Head, c *clock, n int, keyed bool) []*Series {
	t.Helper()
	series := make([]*Series, n)
	for i := range series {
		var key uint64
		if keyed {
			key = uint64(i + 1)
		}
		series[i] = appendKeyed(t, h, "a", packed("__name__", "up", "cluster_id", "a", "i", fmt.Sprint(i)), key, nil, Sample{c.t.UnixMilli(), 1})
	}
	return series
}

func TestMemoRemembersWhatPrepareResolved(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	up := packed("__name__", "up", "cluster_id", "a")
	m := h.Memo("a")
	if m.Get(42) != nil {
		t.Fatal("empty memo returned a series")
	}
	s := appendKeyed(t, h, "a", up, 42, nil, Sample{now, 1})
	if got := m.Get(42); got != s {
		t.Fatalf("Get(42) = %v, want the created series", got)
	}
	if m.Get(43) != nil || h.Memo("b").Get(42) != nil {
		t.Fatal("a key was found under another key or tenant")
	}
	// A batch series without a key leaves the entry alone.
	appendKeyed(t, h, "a", up, 0, nil, Sample{now + 1, 2})
	if m.Get(42) != s {
		t.Fatal("a batch series without a key changed the entry")
	}
	// A key now naming another series is moved to it.
	other := appendKeyed(t, h, "a", packed("__name__", "up", "cluster_id", "a", "x", "1"), 42, nil, Sample{now, 1})
	if m.Get(42) != other || m.entries() != 1 {
		t.Fatalf("key 42 was not moved to the new series (entries %d)", m.entries())
	}
}

// TestMemoHoldsOneKeyPerSeries: a sender that writes one series' labels a
// new way every time (a changing client cluster label, label order,
// encoding) cannot grow the memo past the series held.
func TestMemoHoldsOneKeyPerSeries(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	up := packed("__name__", "up", "cluster_id", "a")
	var s *Series
	for k := range uint64(1000) {
		s = appendKeyed(t, h, "a", up, k+1, nil, Sample{now + int64(k), 1})
	}
	m := h.Memo("a")
	if n := m.entries(); n != 1 {
		t.Fatalf("%d memo entries for one series", n)
	}
	if m.Get(1000) != s || m.Get(999) != nil {
		t.Fatal("the series is not remembered under its last key alone")
	}
	slots := 0
	for i := range m.stripes {
		slots += len(m.stripes[i].slots)
	}
	if slots > memoStripes*8 {
		t.Fatalf("%d slots for one entry", slots)
	}
}

// TestMemoPutsThatCrossLeaveOneEntry: concurrent Prepares of one series
// under two keys leave it under one of them.
func TestMemoPutsThatCrossLeaveOneEntry(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	s := appendKeyed(t, h, "a", packed("__name__", "up", "cluster_id", "a"), 1, nil, Sample{now, 1})
	m := h.Memo("a")
	for round := range 200 {
		var wg sync.WaitGroup
		for k := range uint64(4) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.put(uint64(round)*4+k+2, s)
			}()
		}
		wg.Wait()
		if n := m.entries(); n != 1 {
			t.Fatalf("round %d: %d entries for one series", round, n)
		}
		if m.Get(s.key.Load()) != s {
			t.Fatalf("round %d: the series is not under its own key", round)
		}
	}
}

func TestPrepareTakesAKnownSeriesOnlyWhileHeld(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	up := packed("__name__", "up", "cluster_id", "a")
	s := appendKeyed(t, h, "a", up, 42, nil, Sample{now, 1})

	// Taken as given: Labels are not even read. (A caller passes the known
	// series' own labels; other labels here prove no lookup happened.)
	got := appendKeyed(t, h, "a", packed("__name__", "other", "cluster_id", "a"), 0, s, Sample{now + 1, 2})
	if got != s || h.NumSeries() != 1 {
		t.Fatalf("known series not taken: got %p want %p, %d series", got, s, h.NumSeries())
	}
	if ts, v := s.Latest(); ts != now+1 || v != 2 {
		t.Fatalf("sample through a known series: %d %v", ts, v)
	}

	// Another tenant's series is never taken, nor its labels when the
	// batch series has none of its own.
	got = appendKeyed(t, h, "b", packed("__name__", "up", "cluster_id", "b"), 0, s, Sample{now + 2, 3})
	if got == s || got.Tenant() != "b" {
		t.Fatal("a known series of tenant a was taken for tenant b")
	}
	if got := appendKeyed(t, h, "b", nil, 0, s, Sample{now + 3, 4}); got != nil || h.NumSeries() != 2 {
		t.Fatalf("tenant b stored a series under tenant a's labels (%d series)", h.NumSeries())
	}

	// Once removed it is not taken: the labels are looked up, a new series
	// is created and the key now names it.
	h.Remove([]*Series{s})
	if h.Memo("a").Get(42) != nil {
		t.Fatal("Get returned a removed series")
	}
	got = appendKeyed(t, h, "a", up, 42, s, Sample{now + 3, 4})
	if got == s || string(got.Labels()) != string(up) {
		t.Fatal("a removed known series was taken")
	}
	if h.Memo("a").Get(42) != got {
		t.Fatal("the key does not name the new series")
	}
}

func TestRemovalDeletesMemoEntries(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	const n = 200
	for i := range n {
		lbls := packed("__name__", "up", "cluster_id", "a", "i", fmt.Sprint(i))
		appendKeyed(t, h, "a", lbls, uint64(i+1), nil, Sample{now, 1})
	}
	m := h.Memo("a")
	if m.entries() != n {
		t.Fatalf("entries %d, want %d", m.entries(), n)
	}
	// Half the series stay fresh; the other half expire and GC removes
	// them, and their entries with them.
	c.t = c.t.Add(9 * time.Minute)
	for i := 0; i < n; i += 2 {
		lbls := packed("__name__", "up", "cluster_id", "a", "i", fmt.Sprint(i))
		appendKeyed(t, h, "a", lbls, uint64(i+1), nil, Sample{c.t.UnixMilli(), 2})
	}
	c.t = c.t.Add(2 * time.Minute)
	h.GC()
	if h.NumSeries() != n/2 || m.entries() != n/2 {
		t.Fatalf("after GC: %d series, %d entries; want %d of each", h.NumSeries(), m.entries(), n/2)
	}
	for i := range n {
		if got := m.Get(uint64(i + 1)); (got != nil) != (i%2 == 0) {
			t.Fatalf("key %d: got %v", i+1, got)
		}
	}
	// Remove (a handoff, a dropped tenant) deletes them too, and the
	// tables shrink.
	h.Remove(h.AppendAllSeries(nil))
	if m.entries() != 0 {
		t.Fatalf("%d entries after every series was removed", m.entries())
	}
	for i := range m.stripes {
		if l := len(m.stripes[i].slots); l > 8 {
			t.Fatalf("stripe %d keeps %d slots with nothing in it", i, l)
		}
	}
}

func TestMemoTableStaysBounded(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	m := h.Memo("a")
	// Series come and go under ever new keys; growth drops removed
	// entries, so the table holds about what is live.
	for round := range 20 {
		var ss []*Series
		for i := range 100 {
			lbls := packed("__name__", "up", "cluster_id", "a", "i", fmt.Sprint(round*100+i))
			ss = append(ss, appendKeyed(t, h, "a", lbls, uint64(round*100+i+1), nil, Sample{now, 1}))
		}
		h.Remove(ss)
	}
	slots := 0
	for i := range m.stripes {
		slots += len(m.stripes[i].slots)
	}
	if slots > 16*32 {
		t.Fatalf("%d memo slots for at most 100 live series", slots)
	}
}

func TestPrepareKnownSeriesDoesNotAllocate(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	b := &Batch{Tenant: "a"}
	for i := range 100 {
		lbls := packed("__name__", "up", "cluster_id", "a", "i", fmt.Sprint(i))
		b.Series = append(b.Series, BatchSeries{Labels: lbls, Samples: []Sample{{now, 1}}, Key: uint64(i + 1)})
	}
	if err := h.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	m := h.Memo("a")
	for i := range b.Series {
		b.Series[i].Known = m.Get(b.Series[i].Key)
		if b.Series[i].Known == nil {
			t.Fatalf("series %d not remembered", i)
		}
	}
	ss := make([]*Series, 0, len(b.Series))
	if n := testing.AllocsPerRun(20, func() {
		ss, _ = h.Prepare(b, ss[:0])
		h.Commit(b, ss)
	}); n != 0 {
		t.Fatalf("%v allocations per batch of known series", n)
	}
}

// TestMemoGetDuringChanges reads a memo while entries are added, moved by
// deletion and tables rebuilt: every answer is nil or the series under
// that key.
func TestMemoGetDuringChanges(t *testing.T) {
	h, c := newTestHead(t)
	const n = 2000
	series := appendNumbered(t, h, c, n, false)
	m := h.Memo("a")
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				for i := range n {
					if got := m.Get(uint64(i + 1)); got != nil && got != series[i] {
						t.Errorf("key %d answered with another series", i+1)
						return
					}
				}
			}
		}()
	}
	for round := range 20 {
		for i := range n {
			m.put(uint64(i+1), series[i])
		}
		for i := round % 2; i < n; i += 2 {
			m.delete(uint64(i+1), series[i])
		}
	}
	close(done)
	wg.Wait()
}

// TestMemoGetManyAgreesWithGet: GetMany answers each key as Get does:
// held series, nil for keys never put, key 0, deleted entries and removed
// series, whatever the order and repeats of the keys.
func TestMemoGetManyAgreesWithGet(t *testing.T) {
	h, c := newTestHead(t)
	const n = 300
	series := appendNumbered(t, h, c, n, true)
	m := h.Memo("a")
	h.Remove(series[:n/3])
	for i := n / 3; i < n/2; i++ {
		m.delete(uint64(i+1), series[i])
	}
	rng := rand.New(rand.NewPCG(7, 8))
	keys := make([]uint64, 5000)
	for i := range keys {
		keys[i] = uint64(rng.IntN(n + 100)) // 0, held, removed, deleted and unknown keys
	}
	out := make([]*Series, len(keys)+3)
	for i := range out {
		out[i] = series[n-1] // GetMany must overwrite every answer it gives
	}
	m.GetMany(keys, out)
	held := 0
	for i, k := range keys {
		if want := m.Get(k); out[i] != want {
			t.Fatalf("key %d: GetMany answered %p, Get %p", k, out[i], want)
		}
		if out[i] != nil {
			held++
			if int(k) <= n/2 || out[i] != series[k-1] {
				t.Fatalf("key %d answered with a removed, deleted or other series", k)
			}
		}
	}
	if held == 0 {
		t.Fatal("no key was answered: the test checks nothing")
	}
}
