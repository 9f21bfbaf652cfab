package head

import (
	"context"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// StaleNaN is the bit pattern of Prometheus' staleness marker.
const StaleNaN uint64 = 0x7ff0000000000002

// IsStale reports whether v is a staleness marker.
func IsStale(v float64) bool { return math.Float64bits(v) == StaleNaN }

// Sample is one sample; T is in milliseconds since the epoch.
type Sample struct {
	T int64
	V float64
}

// Batch is one tenant's processed write request. The head only reads it
// during Append.
type Batch struct {
	Tenant string
	Series []BatchSeries
}

// BatchSeries is one series of a Batch: its packed, sorted labels (see
// Labels) and its samples in any order.
type BatchSeries struct {
	Labels  []byte
	Samples []Sample
}

// Options configure a Head.
type Options struct {
	// Retention is how long a series stays visible after its newest sample.
	Retention time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

const stripeCount = 1024 // a power of two

// Head is the latest-sample store. See the package documentation.
type Head struct {
	retention time.Duration
	now       func() time.Time

	stripes [stripeCount]stripe

	famMu    sync.RWMutex
	families map[string]*family

	tenMu   sync.RWMutex
	tenants map[string]*tenant

	numSeries atomic.Int64
	metrics   metrics
}

type stripe struct {
	mu     sync.Mutex
	series map[uint64]*Series
	_      [40]byte // keep neighbouring stripe locks off one cache line
}

type family struct {
	series []*Series
}

type tenant struct {
	id     string
	series atomic.Int64
}

// Series is one held series. Its labels never change; its newest sample is
// read with Latest.
type Series struct {
	labels Labels
	name   string // the __name__ value, a substring of labels
	hash   uint64
	next   *Series // next series of the same hash in its stripe
	tenant *tenant
	famIdx int // index in its family; guarded by Head.famMu

	// seq is odd while t and v are being written (a sequence lock).
	seq atomic.Uint64
	t   atomic.Int64
	v   atomic.Uint64
}

type metrics struct {
	created    prometheus.Counter
	removed    prometheus.Counter
	outOfOrder prometheus.Counter
	gcDuration prometheus.Histogram
}

// New returns an empty head whose metrics are registered on reg.
func New(opts Options, reg prometheus.Registerer) *Head {
	h := &Head{
		retention: opts.Retention,
		now:       opts.Now,
		families:  make(map[string]*family),
		tenants:   make(map[string]*tenant),
	}
	if h.now == nil {
		h.now = time.Now
	}
	for i := range h.stripes {
		h.stripes[i].series = make(map[uint64]*Series)
	}
	h.metrics = metrics{
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_head_series_created_total",
			Help: "Series created in the head.",
		}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_head_series_removed_total",
			Help: "Series removed from the head after their retention ran out.",
		}),
		outOfOrder: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_head_out_of_order_samples_total",
			Help: "Accepted samples not newer than the sample already held for their series; they do not replace it.",
		}),
		gcDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fedgate_head_gc_duration_seconds",
			Help:    "Time taken to remove expired series from the head.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
	}
	if reg != nil {
		reg.MustRegister(h.metrics.created, h.metrics.removed, h.metrics.outOfOrder, h.metrics.gcDuration,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "fedgate_head_series",
				Help: "Series held in the head.",
			}, func() float64 { return float64(h.numSeries.Load()) }))
	}
	return h
}

// MinTime returns the oldest timestamp, in milliseconds, that is still
// visible at the head's current time.
func (h *Head) MinTime() int64 {
	return h.now().Add(-h.retention).UnixMilli()
}

// Append applies the newest sample of each series of b. It returns only
// when the batch is applied; the error result is for storage that can fail
// (a WAL), the head alone never fails.
func (h *Head) Append(_ context.Context, b *Batch) error {
	ten := h.tenant(b.Tenant)
	minT := h.MinTime()
	var created, outOfOrder int
	for i := range b.Series {
		bs := &b.Series[i]
		if len(bs.Samples) == 0 {
			continue
		}
		newest := bs.Samples[0]
		for _, s := range bs.Samples[1:] {
			if s.T > newest.T {
				newest = s
			}
		}
		hash := xxhash.Sum64(bs.Labels)
		st := &h.stripes[hash&(stripeCount-1)]
		st.mu.Lock()
		s := st.get(hash, bs.Labels)
		switch {
		case s == nil:
			if newest.T < minT {
				break // too old to be visible: nothing to hold
			}
			s = h.create(st, hash, bs.Labels, ten)
			s.set(newest.T, newest.V)
			created++
		default:
			held := s.t.Load()
			for _, smp := range bs.Samples {
				if smp.T <= held {
					outOfOrder++
				}
			}
			if newest.T > held {
				s.set(newest.T, newest.V)
			}
		}
		st.mu.Unlock()
	}
	if created > 0 {
		h.metrics.created.Add(float64(created))
		h.numSeries.Add(int64(created))
		ten.series.Add(int64(created))
	}
	if outOfOrder > 0 {
		h.metrics.outOfOrder.Add(float64(outOfOrder))
	}
	return nil
}

func (st *stripe) get(hash uint64, lbls []byte) *Series {
	for s := st.series[hash]; s != nil; s = s.next {
		if string(s.labels) == string(lbls) {
			return s
		}
	}
	return nil
}

// create adds a series to stripe st, which the caller has locked, and to its
// family.
func (h *Head) create(st *stripe, hash uint64, lbls []byte, ten *tenant) *Series {
	s := &Series{labels: Labels(lbls), hash: hash, tenant: ten}
	s.name = s.labels.Get("__name__")
	s.next = st.series[hash]
	st.series[hash] = s

	h.famMu.Lock()
	f := h.families[s.name]
	if f == nil {
		f = &family{}
		h.families[s.name] = f
	}
	s.famIdx = len(f.series)
	f.series = append(f.series, s)
	h.famMu.Unlock()
	return s
}

func (h *Head) tenant(id string) *tenant {
	h.tenMu.RLock()
	t := h.tenants[id]
	h.tenMu.RUnlock()
	if t != nil {
		return t
	}
	h.tenMu.Lock()
	defer h.tenMu.Unlock()
	if t = h.tenants[id]; t == nil {
		id = string([]byte(id)) // the caller's string may alias a request
		t = &tenant{id: id}
		h.tenants[id] = t
	}
	return t
}

// set publishes a new newest sample. The caller holds the series' stripe
// lock, so writers never race each other.
func (s *Series) set(t int64, v float64) {
	s.seq.Add(1)
	s.t.Store(t)
	s.v.Store(math.Float64bits(v))
	s.seq.Add(1)
}

// Labels returns the series' label set.
func (s *Series) Labels() Labels { return s.labels }

// Latest returns the newest sample held for the series.
func (s *Series) Latest() (t int64, v float64) {
	for {
		q := s.seq.Load()
		if q&1 == 0 {
			t, bits := s.t.Load(), s.v.Load()
			if s.seq.Load() == q {
				return t, math.Float64frombits(bits)
			}
		}
		runtime.Gosched()
	}
}

// NumSeries returns the number of series held.
func (h *Head) NumSeries() int { return int(h.numSeries.Load()) }

// TenantSeries returns the number of series held for one tenant.
func (h *Head) TenantSeries(id string) int {
	h.tenMu.RLock()
	t := h.tenants[id]
	h.tenMu.RUnlock()
	if t == nil {
		return 0
	}
	return int(t.series.Load())
}

// AppendFamilyNames appends the metric names of all held series to dst,
// sorted.
func (h *Head) AppendFamilyNames(dst []string) []string {
	start := len(dst)
	h.famMu.RLock()
	for name := range h.families {
		dst = append(dst, name)
	}
	h.famMu.RUnlock()
	slices.Sort(dst[start:])
	return dst
}

// AppendFamily appends the series whose metric name is name to dst: a
// snapshot, so that the caller can write them out without holding a lock.
func (h *Head) AppendFamily(dst []*Series, name string) []*Series {
	h.famMu.RLock()
	if f := h.families[name]; f != nil {
		dst = append(dst, f.series...)
	}
	h.famMu.RUnlock()
	return dst
}

// GC removes every series whose newest sample is older than the retention.
func (h *Head) GC() {
	start := time.Now()
	minT := h.MinTime()
	var removed []*Series
	for i := range h.stripes {
		st := &h.stripes[i]
		removed = removed[:0]
		st.mu.Lock()
		for hash, first := range st.series {
			var keep *Series // the chain rebuilt without expired series
			for s := first; s != nil; {
				next := s.next
				if s.t.Load() < minT {
					removed = append(removed, s)
				} else {
					s.next = keep
					keep = s
				}
				s = next
			}
			if keep == nil {
				delete(st.series, hash)
			} else {
				st.series[hash] = keep
			}
		}
		if len(removed) > 0 {
			h.removeFromFamilies(removed)
		}
		st.mu.Unlock()
		for _, s := range removed {
			s.tenant.series.Add(-1)
		}
		h.numSeries.Add(-int64(len(removed)))
		h.metrics.removed.Add(float64(len(removed)))
	}
	h.metrics.gcDuration.Observe(time.Since(start).Seconds())
}

func (h *Head) removeFromFamilies(ss []*Series) {
	h.famMu.Lock()
	defer h.famMu.Unlock()
	for _, s := range ss {
		f := h.families[s.name]
		last := len(f.series) - 1
		moved := f.series[last]
		f.series[s.famIdx] = moved
		moved.famIdx = s.famIdx
		f.series[last] = nil
		f.series = f.series[:last]
		if last == 0 {
			delete(h.families, s.name)
		}
	}
}

// Run removes expired series periodically until ctx is done.
func (h *Head) Run(ctx context.Context) {
	interval := min(max(h.retention/4, time.Second), time.Minute)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			h.GC()
		}
	}
}
