package head

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func packed(kv ...string) []byte {
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		b = AppendLabel(b, kv[i], kv[i+1])
	}
	return b
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestHead(t *testing.T) (*Head, *clock) {
	t.Helper()
	c := &clock{t: time.UnixMilli(1_000_000_000)}
	return New(Options{Retention: 10 * time.Minute, Now: c.now}, prometheus.NewRegistry()), c
}

func appendOne(t *testing.T, h *Head, tenant string, lbls []byte, samples ...Sample) {
	t.Helper()
	if err := h.Append(context.Background(), &Batch{Tenant: tenant, Series: []BatchSeries{{Labels: lbls, Samples: samples}}}); err != nil {
		t.Fatal(err)
	}
}

func latest(t *testing.T, h *Head, lbls []byte) (int64, float64, bool) {
	t.Helper()
	name := Labels(lbls).Get("__name__")
	for _, s := range h.AppendFamily(nil, name) {
		if string(s.Labels()) == string(lbls) {
			ts, v := s.Latest()
			return ts, v, true
		}
	}
	return 0, 0, false
}

func TestNewestSampleWins(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	up := packed("__name__", "up", "cluster_id", "a", "job", "node")
	cases := []struct {
		name    string
		samples []Sample
		wantT   int64
		wantV   float64
	}{
		{"first sample is held", []Sample{{now - 1000, 1}}, now - 1000, 1},
		{"newer replaces", []Sample{{now - 500, 2}}, now - 500, 2},
		{"older is ignored", []Sample{{now - 900, 3}}, now - 500, 2},
		{"same timestamp keeps the first value", []Sample{{now - 500, 4}}, now - 500, 2},
		{"newest of a catching-up batch", []Sample{{now - 300, 5}, {now - 100, 7}, {now - 200, 6}}, now - 100, 7},
	}
	for _, c := range cases {
		appendOne(t, h, "a", up, c.samples...)
		ts, v, ok := latest(t, h, up)
		if !ok || ts != c.wantT || v != c.wantV {
			t.Fatalf("%s: latest = %d, %v, %v; want %d, %v", c.name, ts, v, ok, c.wantT, c.wantV)
		}
	}
	if got := testutil.ToFloat64(h.metrics.outOfOrder); got != 2 {
		t.Errorf("out-of-order samples = %v, want 2", got)
	}
	if h.NumSeries() != 1 || h.TenantSeries("a") != 1 || h.TenantSeries("b") != 0 {
		t.Errorf("series counts = %d, a=%d, b=%d", h.NumSeries(), h.TenantSeries("a"), h.TenantSeries("b"))
	}
}

func TestStaleMarker(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	stale := math.Float64frombits(StaleNaN)
	lbls := packed("__name__", "up", "cluster_id", "a")
	appendOne(t, h, "a", lbls, Sample{now - 300, 1})
	appendOne(t, h, "a", lbls, Sample{now - 200, stale})
	if _, v, _ := latest(t, h, lbls); !IsStale(v) {
		t.Fatalf("after a stale marker, latest value = %v, want the stale marker", v)
	}
	appendOne(t, h, "a", lbls, Sample{now - 250, 5})
	if _, v, _ := latest(t, h, lbls); !IsStale(v) {
		t.Fatalf("an older sample revived a stale series: %v", v)
	}
	appendOne(t, h, "a", lbls, Sample{now - 100, 6})
	if ts, v, _ := latest(t, h, lbls); v != 6 || ts != now-100 {
		t.Fatalf("a newer sample did not revive the series: %d %v", ts, v)
	}
	if IsStale(math.NaN()) {
		t.Fatal("an ordinary NaN is not a stale marker")
	}
}

func TestRetention(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	old := packed("__name__", "old", "cluster_id", "a")
	fresh := packed("__name__", "fresh", "cluster_id", "a")
	appendOne(t, h, "a", old, Sample{now - (10 * time.Minute).Milliseconds() - 1, 1})
	if h.NumSeries() != 0 {
		t.Fatal("a series whose only sample is past retention was created")
	}
	appendOne(t, h, "a", old, Sample{now - 1000, 1})
	appendOne(t, h, "a", fresh, Sample{now - 1000, 1})
	c.t = c.t.Add(10 * time.Minute)
	appendOne(t, h, "a", fresh, Sample{c.t.UnixMilli(), 2})
	h.GC()
	if h.NumSeries() != 1 || h.TenantSeries("a") != 1 {
		t.Fatalf("after GC: %d series, tenant a %d; want 1", h.NumSeries(), h.TenantSeries("a"))
	}
	if names := h.AppendFamilyNames(nil); len(names) != 1 || names[0] != "fresh" {
		t.Fatalf("families after GC = %v, want [fresh]", names)
	}
	if _, _, ok := latest(t, h, old); ok {
		t.Fatal("expired series still listed")
	}
	if got := testutil.ToFloat64(h.metrics.removed); got != 1 {
		t.Errorf("removed = %v, want 1", got)
	}
}

// TestHashCollisions drives the stripe chain directly with one forced hash.
func TestHashCollisions(t *testing.T) {
	h, c := newTestHead(t)
	ten := h.tenant("a")
	st := &h.stripes[0]
	a, b, d := packed("__name__", "x", "i", "1"), packed("__name__", "x", "i", "2"), packed("__name__", "y", "i", "3")
	for _, l := range [][]byte{a, b, d} {
		h.create(st, 42, l, ten, h.lastRef.Add(1)).set(c.t.UnixMilli(), 1)
	}
	for _, l := range [][]byte{a, b, d} {
		if s := st.get(42, l); s == nil || string(s.Labels()) != string(l) {
			t.Fatalf("get(%s) = %v", Labels(l), s)
		}
	}
	if st.get(42, packed("__name__", "x", "i", "4")) != nil {
		t.Fatal("found a series that was never created")
	}
	st.get(42, b).set(c.t.Add(-time.Hour).UnixMilli(), 1)
	h.GC()
	if st.get(42, b) != nil || st.get(42, a) == nil || st.get(42, d) == nil {
		t.Fatal("GC of one series in a collision chain lost or kept the wrong one")
	}
	if n := len(h.AppendFamily(nil, "x")); n != 1 {
		t.Fatalf("family x has %d series, want 1", n)
	}
}

func TestLabels(t *testing.T) {
	long := strings.Repeat("v", 300) // a two-byte length prefix
	ls := Labels(packed("__name__", "up", "a", "", "b", long, "c", "x\"y\n\\"))
	if ls.Len() != 4 || ls.Get("b") != long || ls.Get("a") != "" || ls.Get("zz") != "" || ls.Get("__name__") != "up" {
		t.Fatalf("round trip failed: %s", ls)
	}
	if got, want := Labels(packed("a", "x\"y\n\\")).String(), `{a="x\"y\n\\"}`; got != want {
		t.Fatalf("String = %s, want %s", got, want)
	}
}

// TestLatestIsConsistent checks that a reader never sees the timestamp of
// one sample with the value of another.
func TestLatestIsConsistent(t *testing.T) {
	h, c := newTestHead(t)
	base := c.t.UnixMilli() - 1000
	lbls := packed("__name__", "up", "cluster_id", "a")
	appendOne(t, h, "a", lbls, Sample{base, float64(base)})
	s := h.AppendFamily(nil, "up")[0]
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := int64(1); i <= 20000; i++ {
			appendOne(t, h, "a", lbls, Sample{base + i, float64(base + i)})
		}
		close(done)
	}()
	for reading := true; reading; {
		select {
		case <-done:
			reading = false
		default:
		}
		if ts, v := s.Latest(); float64(ts) != v {
			t.Fatalf("torn read: t=%d v=%v", ts, v)
		}
	}
	wg.Wait()
}

func TestPrepareCommitExistingSeriesDoesNotAllocate(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	b := &Batch{Tenant: "a"}
	for i := range 500 {
		b.Series = append(b.Series, BatchSeries{
			Labels:  packed("__name__", "m", "cluster_id", "a", "pod", fmt.Sprintf("pod-%d", i)),
			Samples: []Sample{{now, 1}},
		})
	}
	ctx := context.Background()
	if err := h.Append(ctx, b); err != nil {
		t.Fatal(err)
	}
	ss := make([]*Series, 0, len(b.Series))
	allocs := testing.AllocsPerRun(20, func() {
		now++
		for i := range b.Series {
			b.Series[i].Samples[0].T = now
		}
		ss, _ = h.Prepare(b, ss[:0])
		h.Commit(b, ss)
	})
	if allocs > 0 {
		t.Fatalf("Prepare and Commit of 500 existing series allocated %v times", allocs)
	}
	if ts, _, _ := latest(t, h, b.Series[0].Labels); ts != now {
		t.Fatalf("latest sample at %d, want %d", ts, now)
	}
}

func TestSeriesLimit(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	b := &Batch{Tenant: "a", MaxSeries: 3}
	for i := range 5 {
		b.Series = append(b.Series, BatchSeries{Labels: packed("__name__", "m", "i", fmt.Sprint(i)), Samples: []Sample{{now, 1}, {now - 1, 1}}})
	}
	err := h.Append(context.Background(), b)
	var le *SeriesLimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrSeriesLimit) || le.Series != 2 || le.Samples != 4 || le.Limit != 3 {
		t.Fatalf("Append = %v, want 2 series (4 samples) refused at limit 3", err)
	}
	if h.TenantSeries("a") != 3 {
		t.Fatalf("tenant holds %d series, want 3", h.TenantSeries("a"))
	}
	// Existing series keep updating; other tenants are not affected.
	b.Series = b.Series[:3]
	for i := range b.Series {
		b.Series[i].Samples = []Sample{{now + 10, 2}}
	}
	if err := h.Append(context.Background(), b); err != nil {
		t.Fatalf("updating held series: %v", err)
	}
	if ts, _, _ := latest(t, h, b.Series[0].Labels); ts != now+10 {
		t.Fatal("a held series was not updated at the limit")
	}
	other := &Batch{Tenant: "b", MaxSeries: 3, Series: []BatchSeries{{Labels: packed("__name__", "m", "i", "x"), Samples: []Sample{{now, 1}}}}}
	if err := h.Append(context.Background(), other); err != nil {
		t.Fatalf("another tenant was limited: %v", err)
	}
}

func TestSeriesLimitUnderConcurrency(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 100 {
				b := &Batch{Tenant: "a", MaxSeries: 250, Series: []BatchSeries{{
					Labels: packed("__name__", "m", "w", fmt.Sprint(w), "i", fmt.Sprint(i)), Samples: []Sample{{now, 1}}}}}
				_ = h.Append(context.Background(), b)
			}
		})
	}
	wg.Wait()
	if n := h.TenantSeries("a"); n != 250 {
		t.Fatalf("tenant holds %d series, want exactly its limit of 250", n)
	}
}

func TestRemove(t *testing.T) {
	h, c := newTestHead(t)
	now := c.t.UnixMilli()
	for i := range 3 {
		appendOne(t, h, "a", packed("__name__", "m", "i", fmt.Sprint(i)), Sample{now, 1})
	}
	appendOne(t, h, "b", packed("__name__", "m", "i", "b"), Sample{now, 1})
	var gone []*Series
	for _, s := range h.AppendFamily(nil, "m") {
		if s.Tenant() == "a" {
			gone = append(gone, s)
		}
	}
	h.Remove(gone)
	h.Remove(gone) // twice is harmless
	if h.NumSeries() != 1 || h.TenantSeries("a") != 0 || h.TenantSeries("b") != 1 || len(h.AppendFamily(nil, "m")) != 1 {
		t.Fatalf("after Remove: %d series, a %d, b %d", h.NumSeries(), h.TenantSeries("a"), h.TenantSeries("b"))
	}
	// A removed series' labels come back as a new series.
	appendOne(t, h, "a", packed("__name__", "m", "i", "0"), Sample{now + 1, 2})
	if h.TenantSeries("a") != 1 {
		t.Fatal("a removed series cannot be written again")
	}
}

// hookLocker is a barrier that counts how often it is taken and runs a
// hook just before, as if an Append got in between.
type hookLocker struct {
	locks int
	hook  func()
	mu    sync.Mutex
}

func (l *hookLocker) Lock() {
	l.locks++
	if l.hook != nil {
		l.hook()
	}
	l.mu.Lock()
}

func (l *hookLocker) Unlock() { l.mu.Unlock() }

// TestGCTakesTheBarrierOnlyToRemove: a GC pass over a head with nothing
// expired never takes the caller's barrier; with expired series it takes it
// once per chunk that has some, and a series that received a newer sample
// between the walk and the barrier (a Commit) stays.
func TestGCTakesTheBarrierOnlyToRemove(t *testing.T) {
	h, c := newTestHead(t)
	for i := range 2000 {
		appendOne(t, h, "a", packed("__name__", "m", "i", fmt.Sprint(i)), Sample{c.t.UnixMilli(), 1})
	}
	var bar hookLocker
	for chunk := range GCChunks {
		h.GCChunk(chunk, &bar)
	}
	if bar.locks != 0 || h.NumSeries() != 2000 {
		t.Fatalf("nothing expired: barrier taken %d times, %d series left; want 0 and 2000", bar.locks, h.NumSeries())
	}

	old, revived := packed("__name__", "old", "i", "1"), packed("__name__", "old", "i", "2")
	appendOne(t, h, "a", old, Sample{c.t.UnixMilli(), 1})
	appendOne(t, h, "a", revived, Sample{c.t.UnixMilli(), 1})
	c.t = c.t.Add(11 * time.Minute) // everything expired
	bar.hook = func() {
		bar.hook = nil
		appendOne(t, h, "a", revived, Sample{c.t.UnixMilli(), 2})
	}
	first := int(xxhash.Sum64(revived)&(stripeCount-1)) / (stripeCount / GCChunks) // its chunk
	h.GCChunk(first, &bar)
	for chunk := range GCChunks {
		if chunk != first {
			h.GCChunk(chunk, &bar)
		}
	}
	if bar.locks == 0 || bar.locks > GCChunks {
		t.Fatalf("barrier taken %d times, want once per chunk with expired series", bar.locks)
	}
	if h.NumSeries() != 1 {
		t.Fatalf("%d series left, want only the one written during GC", h.NumSeries())
	}
	if ts, _, ok := latest(t, h, revived); !ok || ts != c.t.UnixMilli() {
		t.Fatalf("the series written between GC's walk and its barrier: held %v at %d", ok, ts)
	}
}

// TestEmptyLabelSet: a series without labels (the head refuses none) has
// nothing after its struct; its labels must not point past its allocation,
// which the GC (and, under -race, checkptr) would catch.
func TestEmptyLabelSet(t *testing.T) {
	h, c := newTestHead(t)
	appendOne(t, h, "a", nil, Sample{c.t.UnixMilli(), 1})
	ss := h.AppendAllSeries(nil)
	if len(ss) != 1 || ss[0].Labels() != "" {
		t.Fatalf("held %d series, labels %q; want one with none", len(ss), ss[0].Labels())
	}
	runtime.GC()
	runtime.GC()
	if ts, _ := ss[0].Latest(); ts != c.t.UnixMilli() {
		t.Fatalf("held %d", ts)
	}
}
