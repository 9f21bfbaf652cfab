package head

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

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
	// MaxSeries bounds the tenant's held series: a series of the batch that
	// would be created beyond it is refused. 0 means no bound.
	MaxSeries int
	// ReleaseLabels, if set, is called by a store that will read no more of
	// the batch's Labels (it may still read Samples), at most once, on the
	// goroutine that called its Append and before that returns: the caller
	// can then reuse the labels' memory while the batch is being logged.
	ReleaseLabels func()
}

// LabelsRead calls b.ReleaseLabels, if set, and clears it.
func (b *Batch) LabelsRead() {
	if f := b.ReleaseLabels; f != nil {
		b.ReleaseLabels = nil
		f()
	}
}

// ErrSeriesLimit is matched by a *SeriesLimitError.
var ErrSeriesLimit = errors.New("series limit reached")

// SeriesLimitError reports the series of a batch that were refused because
// their tenant holds MaxSeries series. The batch's other series were
// stored.
type SeriesLimitError struct {
	Limit   int
	Series  int // series refused
	Samples int // their samples
}

func (e *SeriesLimitError) Error() string {
	return fmt.Sprintf("%d new series (%d samples) refused: the tenant holds its limit of %d series", e.Series, e.Samples, e.Limit)
}

func (e *SeriesLimitError) Is(target error) bool { return target == ErrSeriesLimit }

// BatchSeries is one series of a Batch: its packed, sorted labels (see
// Labels) and its samples in any order.
type BatchSeries struct {
	Labels  []byte
	Samples []Sample
	// Key, if not 0, is the caller's key for the form these labels came
	// in: Prepare remembers the series it resolves them to under it, in
	// the tenant's Memo.
	Key uint64
	// Known, if not nil, is a series the caller found in the tenant's
	// Memo and checked has these labels: Prepare takes it without a lookup
	// while it is held. Labels may then be nil (see PackedLabels).
	Known *Series
}

// PackedLabels returns bs.Labels, or, when they are nil, a copy of those of
// bs.Known.
func (bs *BatchSeries) PackedLabels() []byte {
	if bs.Labels == nil && bs.Known != nil {
		return bs.Known.AppendLabels(nil)
	}
	return bs.Labels
}

// Options configure a Head.
type Options struct {
	// Retention is how long a series stays visible after its newest sample.
	Retention time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

const stripeCount = 1 << stripeBits

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
	lastRef   atomic.Uint64
	metrics   metrics
}

type stripe struct {
	mu     sync.Mutex
	series seriesTable
	_      [24]byte // keep neighbouring stripe locks off one cache line
}

type family struct {
	series []*Series
}

type tenant struct {
	id     string
	idx    uint32 // in tenantIDs
	series atomic.Int64
	memo   *Memo
}

// Series is one held series. Its labels never change; its newest sample is
// read with Latest.
//
// A Series holds no pointers, and its labels follow it in the same
// allocation (see newSeries): each held series is one object the Go
// garbage collector marks but never scans. With a pointer to a separate
// label string and to its tenant, a series was two objects and a scan,
// and at a million series every GC cycle's mark cost ~0.1 s of CPU, which
// on one CPU pushes waited behind.
type Series struct {
	ref    uint64 // unique for the life of the data directory
	hash   uint64
	tenant uint32 // index in tenantIDs
	famIdx int32  // index in its family; guarded by Head.famMu

	// flags holds flagLogged, flagRemoved and flagMoved, and above them
	// the slot and serial of the series' symbol table (symtab.tag).
	flags atomic.Uint32
	// base names the full checkpoint its owner, the WAL, last wrote its
	// series record to (0: none).
	base atomic.Uint32
	nlab uint32 // bytes of packed labels after the struct
	// seq is odd while t and v are being written (a sequence lock). 32
	// bits: a reader would have to sleep through 2^31 writes of one
	// series to be fooled by its wrapping.
	seq atomic.Uint32

	// key is the tenant's Memo key the series is remembered under (0:
	// none); see Memo.put.
	key atomic.Uint64

	t atomic.Int64
	v atomic.Uint64
}

// Series.flags.
const (
	flagLogged  = 1 << iota // a series record for it is durable in the WAL
	flagRemoved             // it has left the head; never cleared
	flagMoved               // removed by moveSeries: a replacement holds its ref
)

// seriesSize is the size of a Series without its labels, a multiple of 8.
const seriesSize = unsafe.Sizeof(Series{})

// newSeries allocates a series with the tokens of lbls after it (see
// "Label storage" in the package documentation): one allocation of 8-byte
// words (so that the struct's atomics are aligned) that holds no pointers.
//
// The series is counted on its symbol table: its remover calls
// forgetSeries.
func newSeries(lbls []byte) *Series {
	var buf [512]byte
	pin := PinSymbols() // until the series counts on its table
	defer pin.Release()
	tab := symbols.forNew()
	// Labels aliasing lbls: the tokens copy what they keep (a Labels
	// conversion would copy lbls to the heap first).
	tokens := tab.appendTokens(buf[:0], Labels(unsafe.String(unsafe.SliceData(lbls), len(lbls))))
	words := make([]uint64, (int(seriesSize)+len(tokens)+7)/8)
	s := (*Series)(unsafe.Pointer(unsafe.SliceData(words)))
	if len(tokens) > 0 { // else there is nothing past the struct to point at
		copy(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(s), seriesSize)), len(tokens)), tokens)
	}
	s.nlab = uint32(len(tokens))
	s.flags.Store(tab.tag())
	tab.counted()
	return s
}

// forgetSeries takes removed series off their symbol tables' counts and
// retires the tables that leaves unused.
func forgetSeries(removed []*Series) {
	for _, s := range removed {
		symbols.of(s.flags.Load()).uncounted()
	}
	if len(removed) > 0 {
		symbols.retire()
	}
}

// tenantIDs interns tenant IDs process-wide, so that a series names its
// tenant with an index rather than a pointer. IDs are never removed: a
// process meets a bounded set of them (its configured tenants, and those
// its log holds).
var tenantIDs struct {
	mu    sync.Mutex
	index map[string]uint32
	ids   atomic.Pointer[[]string] // by index; replaced on growth, never changed
}

func internTenant(id string) uint32 {
	tenantIDs.mu.Lock()
	defer tenantIDs.mu.Unlock()
	if i, ok := tenantIDs.index[id]; ok {
		return i
	}
	if tenantIDs.index == nil {
		tenantIDs.index = make(map[string]uint32)
	}
	var ids []string
	if p := tenantIDs.ids.Load(); p != nil {
		ids = *p
	}
	i := uint32(len(ids))
	ids = append(ids[:len(ids):len(ids)], id)
	tenantIDs.ids.Store(&ids)
	tenantIDs.index[id] = i
	return i
}

type metrics struct {
	created    prometheus.Counter
	removed    prometheus.Counter
	moved      prometheus.Counter
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
	h.metrics = metrics{
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_head_series_created_total",
			Help: "Series created in the head.",
		}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_head_series_removed_total",
			Help: "Series removed from the head: retention ran out, or their tenant moved to another instance.",
		}),
		moved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_head_series_moved_total",
			Help: "Series moved to the current symbol table, so that an old table that held few other series could be retired.",
		}),
		outOfOrder: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_head_out_of_order_samples_total",
			Help: "Accepted samples not newer than the sample already held for their series; they do not replace it.",
		}),
		gcDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fedgate_head_gc_duration_seconds",
			Help:    "Time taken to remove expired series from one sixteenth of the head (a GC chunk).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
	}
	if reg != nil {
		reg.MustRegister(h.metrics.created, h.metrics.removed, h.metrics.moved, h.metrics.outOfOrder, h.metrics.gcDuration,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "fedgate_head_series",
				Help: "Series held in the head.",
			}, func() float64 { return float64(h.numSeries.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "fedgate_head_symbols",
				Help: "Label names and values stored once for all series, in all symbol tables (process-wide; at most 131072 per table).",
			}, func() float64 { _, n, _ := SymbolStats(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "fedgate_head_symbol_bytes",
				Help: "Bytes of the label names and values stored once for all series, in all symbol tables (at most 8 MiB per table).",
			}, func() float64 { _, _, b := SymbolStats(); return float64(b) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "fedgate_head_symbol_tables",
				Help: "Symbol tables held: the current one, and full ones that held series still name or that readers may still hold (at most 4).",
			}, func() float64 { t, _, _ := SymbolStats(); return float64(t) }))
	}
	return h
}

// MinTime returns the oldest timestamp, in milliseconds, that is still
// visible at the head's current time.
func (h *Head) MinTime() int64 {
	return h.now().Add(-h.retention).UnixMilli()
}

// noSample is the timestamp of a series created by Prepare whose first
// sample has not been committed yet: older than any retention, so such a
// series is never visible and GC removes it if its commit never comes.
const noSample = math.MinInt64

// Append applies the newest sample of each series of b: Prepare, then
// Commit, series by series. It is the whole store when nothing needs to be
// logged in between. A *SeriesLimitError reports refused series; the rest
// of b is applied. It must not run while GC does: a series moved in
// between would take the sample to its old object.
func (h *Head) Append(_ context.Context, b *Batch) error {
	ten, minT := h.tenant(b.Tenant), h.MinTime()
	var lim SeriesLimitError
	created, outOfOrder := 0, 0
	for i := range b.Series {
		s, isNew, limited := h.prepareOne(ten, &b.Series[i], minT, b.MaxSeries)
		if isNew {
			created++
		}
		if limited {
			lim.Series++
			lim.Samples += len(b.Series[i].Samples)
		}
		outOfOrder += h.commitOne(s, b.Series[i].Samples)
	}
	h.count(created, outOfOrder)
	return lim.err(b.MaxSeries)
}

// err returns e as an error, or nil when no series was refused.
func (e SeriesLimitError) err(limit int) error {
	if e.Series == 0 {
		return nil
	}
	return &SeriesLimitError{Limit: limit, Series: e.Series, Samples: e.Samples}
}

// Prepare resolves every series of b to a held series, creating the missing
// ones (not visible until Commit gives them a sample), and appends them to
// dst in the order of b.Series. A series of b without samples, or whose
// samples are all too old to be visible and which is not held yet, resolves
// to nil. Series returned by Prepare are not removed by GC until Commit, as
// long as the caller keeps GC from running in between (the WAL's cut
// barrier does).
//
// Series refused by b.MaxSeries resolve to nil too, and are reported by the
// returned error, a *SeriesLimitError.
func (h *Head) Prepare(b *Batch, dst []*Series) ([]*Series, error) {
	ten, minT := h.tenant(b.Tenant), h.MinTime()
	var lim SeriesLimitError
	created := 0
	for i := range b.Series {
		s, isNew, limited := h.prepareOne(ten, &b.Series[i], minT, b.MaxSeries)
		if isNew {
			created++
		}
		if limited {
			lim.Series++
			lim.Samples += len(b.Series[i].Samples)
		}
		dst = append(dst, s)
	}
	h.count(created, 0)
	return dst, lim.err(b.MaxSeries)
}

// Commit applies to each series of ss (as returned by Prepare for b) the
// newest sample of the matching batch series, if it is newer than the one
// held.
func (h *Head) Commit(b *Batch, ss []*Series) {
	outOfOrder := 0
	for i, s := range ss {
		outOfOrder += h.commitOne(s, b.Series[i].Samples)
	}
	h.count(0, outOfOrder)
}

func (h *Head) prepareOne(ten *tenant, bs *BatchSeries, minT int64, maxSeries int) (s *Series, created, limited bool) {
	if len(bs.Samples) == 0 {
		return nil, false, false
	}
	if k := bs.Known; k != nil {
		if k.tenant != ten.idx && bs.Labels == nil {
			return nil, false, false // not this tenant's labels: a caller's bug
		}
		if k.tenant == ten.idx && !k.Removed() {
			return k, false, false
		}
	}
	s, created, limited = h.lookupOrCreate(ten, bs, minT, maxSeries)
	if s != nil && bs.Key != 0 {
		ten.memo.put(bs.Key, s)
	}
	return s, created, limited
}

func (h *Head) lookupOrCreate(ten *tenant, bs *BatchSeries, minT int64, maxSeries int) (s *Series, created, limited bool) {
	lbls := bs.PackedLabels()
	hash := xxhash.Sum64(lbls)
	st := &h.stripes[hash&(stripeCount-1)]
	st.mu.Lock()
	defer st.mu.Unlock()
	s = st.get(hash, lbls)
	if s != nil || newestT(bs.Samples) < minT {
		return s, false, false
	}
	// Counted before creating, so that concurrent creators cannot pass the
	// limit together.
	if n := ten.series.Add(1); maxSeries > 0 && n > int64(maxSeries) {
		ten.series.Add(-1)
		return nil, false, true
	}
	s = h.create(st, hash, lbls, ten, h.lastRef.Add(1))
	s.t.Store(noSample)
	return s, true, false
}

// commitOne applies the newest of samples to s and returns how many of
// samples were not newer than the sample held before.
func (h *Head) commitOne(s *Series, samples []Sample) (outOfOrder int) {
	if s == nil {
		return 0
	}
	newest := samples[0]
	for _, smp := range samples[1:] {
		if smp.T > newest.T {
			newest = smp
		}
	}
	st := &h.stripes[s.hash&(stripeCount-1)]
	st.mu.Lock()
	held := s.t.Load()
	if held != noSample {
		for _, smp := range samples {
			if smp.T <= held {
				outOfOrder++
			}
		}
	}
	if newest.T > held {
		s.set(newest.T, newest.V)
	}
	st.mu.Unlock()
	return outOfOrder
}

func newestT(samples []Sample) int64 {
	t := samples[0].T
	for _, s := range samples[1:] {
		t = max(t, s.T)
	}
	return t
}

func (h *Head) count(created, outOfOrder int) {
	if created > 0 {
		h.metrics.created.Add(float64(created))
		h.numSeries.Add(int64(created))
	}
	if outOfOrder > 0 {
		h.metrics.outOfOrder.Add(float64(outOfOrder))
	}
}

// Restore holds a series read back from the log under its ref, or returns
// the series already held with the same labels (an older ref of it).
func (h *Head) Restore(ref uint64, tenant string, lbls []byte) *Series {
	hash := xxhash.Sum64(lbls)
	st := &h.stripes[hash&(stripeCount-1)]
	st.mu.Lock()
	s := st.get(hash, lbls)
	if s == nil {
		ten := h.tenant(tenant)
		s = h.create(st, hash, lbls, ten, ref)
		s.t.Store(noSample)
		h.numSeries.Add(1)
		ten.series.Add(1)
	}
	s.flags.Or(flagLogged)
	st.mu.Unlock()
	for last := h.lastRef.Load(); ref > last && !h.lastRef.CompareAndSwap(last, ref); last = h.lastRef.Load() {
	}
	return s
}

// RestoreSample applies one sample read back from the log: newest wins. It
// takes no lock: it may only be called while nothing else writes to the
// head (replay, before Prepare and Commit are used); readers are safe.
func (h *Head) RestoreSample(s *Series, t int64, v float64) {
	if t > s.t.Load() {
		s.set(t, v)
	}
}

func (st *stripe) get(hash uint64, lbls []byte) *Series { return st.series.get(hash, lbls) }

// create adds a series to stripe st, which the caller has locked, and to its
// family.
func (h *Head) create(st *stripe, hash uint64, lbls []byte, ten *tenant, ref uint64) *Series {
	s := newSeries(lbls)
	s.hash, s.tenant, s.ref = hash, ten.idx, ref
	st.series.insert(s)

	name := s.metricName() // as removeFromFamilies finds it
	h.famMu.Lock()
	f := h.families[name]
	if f == nil {
		f = &family{}
		h.families[name] = f
	}
	s.famIdx = int32(len(f.series))
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
		t = &tenant{id: id, idx: internTenant(id)}
		t.memo = new(Memo)
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

// tokens returns the series' labels as stored.
func (s *Series) tokens() string {
	if s.nlab == 0 {
		return "" // a pointer past the struct would point past the allocation
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(s), seriesSize)), s.nlab)
}

// Iter returns an iterator over the series' labels, positioned before the
// first.
// The caller holds a SymbolPin unless s is held throughout (see "Label
// storage" in the package documentation).
func (s *Series) Iter() LabelIter {
	return LabelIter{rest: s.tokens(), syms: symbols.of(s.flags.Load())}
}

// Touch reads a byte of every cache line the series' labels lie on and
// returns them or'ed together, for a reader of many series that brings
// them all into cache in one loop that only reads, so that their misses
// overlap, before it goes over them again; it keeps the result, lest the
// compiler drop the reads.
func (s *Series) Touch() (x byte) {
	t := s.tokens()
	for i := 0; i < len(t); i += 64 {
		x |= t[i]
	}
	if len(t) > 0 {
		x |= t[len(t)-1]
	}
	return x
}

// AppendLabels appends the series' labels to dst in packed form.
func (s *Series) AppendLabels(dst []byte) []byte {
	for it := s.Iter(); it.Next(); {
		dst = AppendLabel(dst, it.Name, it.Value)
	}
	return dst
}

// Labels returns a copy of the series' labels in packed form. It
// allocates; a loop over many series uses AppendLabels or Iter.
func (s *Series) Labels() Labels { return Labels(s.AppendLabels(nil)) }

// hasLabels reports whether the series' labels are lbls, packed; lbls may
// be any bytes.
func (s *Series) hasLabels(lbls []byte) bool {
	rest := unsafe.String(unsafe.SliceData(lbls), len(lbls))
	for it := s.Iter(); it.Next(); {
		for _, want := range [2]string{it.Name, it.Value} {
			// The length, then the bytes; lbls may be anything (it is
			// compared, never trusted), so neither may run past its end.
			n, w := binary.Uvarint(unsafe.Slice(unsafe.StringData(rest), min(len(rest), binary.MaxVarintLen64)))
			if w <= 0 || w > 1 && rest[w-1] == 0 || // none, or not the shortest form
				n != uint64(len(want)) || len(rest)-w < len(want) || rest[w:w+len(want)] != want {
				return false
			}
			rest = rest[w+len(want):]
		}
	}
	return rest == ""
}

// metricName returns the value of the series' __name__ label.
func (s *Series) metricName() string { return s.Iter().Get("__name__") }

// Ref returns the series' number, unique for the life of the data directory.
func (s *Series) Ref() uint64 { return s.ref }

// Tenant returns the ID of the tenant the series belongs to.
func (s *Series) Tenant() string { return (*tenantIDs.ids.Load())[s.tenant] }

// Committed reports whether the series has a sample: false only between
// Prepare and Commit, or after a Prepare whose Commit never came.
func (s *Series) Committed() bool { return s.t.Load() != noSample }

// Logged reports whether a series record for s is durable in the log.
func (s *Series) Logged() bool { return s.flags.Load()&flagLogged != 0 }

// SetLogged records that a series record for s is durable in the log.
func (s *Series) SetLogged() { s.flags.Or(flagLogged) }

// Removed reports whether the series has left the head (for good: a
// series of the same labels pushed again is a new one).
func (s *Series) Removed() bool { return s.flags.Load()&flagRemoved != 0 }

// Base returns the number its owner last gave SetBase, or 0.
func (s *Series) Base() uint32 { return s.base.Load() }

// SetBase records, for the WAL, which full checkpoint holds the series'
// labels.
func (s *Series) SetBase(n uint32) { s.base.Store(n) }

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

// AppendTenants appends the IDs of the tenants that hold series to dst.
func (h *Head) AppendTenants(dst []string) []string {
	h.tenMu.RLock()
	for id, t := range h.tenants {
		if t.series.Load() > 0 {
			dst = append(dst, id)
		}
	}
	h.tenMu.RUnlock()
	return dst
}

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

// SeriesParts is how many parts AppendSeriesPart cuts the head into.
const SeriesParts = stripeCount

// AppendSeriesPart appends the held series of one part of the head (0 to
// SeriesParts-1) to dst. The parts together are every held series; going
// through them one at a time needs no allocation the size of the head.
func (h *Head) AppendSeriesPart(dst []*Series, part int) []*Series {
	st := &h.stripes[part]
	st.mu.Lock()
	dst = st.series.appendAll(dst)
	st.mu.Unlock()
	return dst
}

// AppendAllSeries appends every held series to dst: a snapshot the size of
// the head, for tests. Walks in the running process go a part at a time
// (AppendSeriesPart).
func (h *Head) AppendAllSeries(dst []*Series) []*Series {
	for i := range h.stripes {
		st := &h.stripes[i]
		st.mu.Lock()
		dst = st.series.appendAll(dst)
		st.mu.Unlock()
	}
	return dst
}

// GCChunks is how many calls of GCChunk make one whole GC pass.
const GCChunks = 16

// GC removes every series whose newest sample is older than the retention.
func (h *Head) GC() {
	for c := range GCChunks {
		h.GCChunk(c, nil)
	}
}

// GCChunk does one sixteenth of a GC pass: the stripes of chunk c (0 to
// GCChunks-1). It looks for expired series under the stripe locks alone;
// only if it finds some does it take barrier (if not nil), check them
// again and remove them. A caller that must keep GC from running between
// Prepare and Commit passes that lock as barrier: it is then held only
// while something is removed, not for the walk over every series (at a
// million series, taking it for the walks stalled pushes for a second).
// The series of sparse symbol tables it finds are moved to the current
// one likewise (see "Label storage" in the package documentation).
func (h *Head) GCChunk(c int, barrier sync.Locker) {
	start := time.Now()
	minT := h.MinTime()
	sparse := h.Sparse()
	var expired, moving []stripeSeries
	per := stripeCount / GCChunks
	for i := c * per; i < (c+1)*per; i++ {
		st := &h.stripes[i]
		st.mu.Lock()
		for _, sl := range st.series.slots {
			switch {
			case sl.s == nil:
			case sl.s.t.Load() < minT:
				expired = append(expired, stripeSeries{st, sl.s})
			case sparse.Holds(sl.s):
				moving = append(moving, stripeSeries{st, sl.s})
			}
		}
		st.mu.Unlock()
	}
	if len(expired) > 0 {
		if barrier != nil {
			barrier.Lock()
		}
		h.removeExpired(expired, minT)
		if barrier != nil {
			barrier.Unlock()
		}
	}
	// Moves hold the barrier a chunk at a time: each is an allocation and
	// a re-encoding, and pushes wait meanwhile.
	for c := range slices.Chunk(moving, MoveChunk) {
		if barrier != nil {
			barrier.Lock()
		}
		h.moveSeries(c, minT)
		if barrier != nil {
			barrier.Unlock()
		}
	}
	symbols.retire() // a retirement may have waited for readers since the last removal
	h.metrics.gcDuration.Observe(time.Since(start).Seconds())
}

// RemoveExpired removes those of ss that are expired and still held,
// holding barrier (if not nil) while it does; see GCChunk. It is for a
// caller that has found the expired series on a walk of its own (the WAL's
// checkpoint reads every series anyway).
func (h *Head) RemoveExpired(ss []*Series, barrier sync.Locker) {
	h.withStripes(ss, barrier, h.removeExpired)
}

// withStripes calls fn with ss, each with its stripe, and the head's
// MinTime, holding barrier (if not nil); with no series, it does nothing.
func (h *Head) withStripes(ss []*Series, barrier sync.Locker, fn func(ss []stripeSeries, minT int64)) {
	if len(ss) == 0 {
		return
	}
	found := make([]stripeSeries, len(ss))
	for i, s := range ss {
		found[i] = stripeSeries{&h.stripes[s.hash&(stripeCount-1)], s}
	}
	if barrier != nil {
		barrier.Lock()
		defer barrier.Unlock()
	}
	fn(found, h.MinTime())
}

// stripeSeries is a series and the stripe it was found in.
type stripeSeries struct {
	st *stripe
	s  *Series
}

// removeExpired removes those of ss, found expired at minT, that still are
// held and expired: a Commit, Remove or move may have come in between.
func (h *Head) removeExpired(ss []stripeSeries, minT int64) {
	removed := make([]*Series, 0, len(ss))
	for _, x := range ss {
		x.st.mu.Lock()
		if x.s.t.Load() < minT && x.st.series.remove(x.s) {
			x.s.flags.Or(flagRemoved)
			h.removeFromFamilies([]*Series{x.s})
			removed = append(removed, x.s)
		}
		x.st.mu.Unlock()
	}
	h.uncount(removed)
}

// MoveChunk is how many series a caller of MoveSeries should move at a
// time: about a millisecond of work under its barrier.
const MoveChunk = 512

// MoveSeries moves those of ss, found on a walk by Sparse, that still
// are held and not expired to the current symbol table, holding barrier
// (if not nil) while it does; see GCChunk. It is for a caller that has
// found them on a walk of its own (the WAL's checkpoint), and passes at
// most MoveChunk at a time.
func (h *Head) MoveSeries(ss []*Series, barrier sync.Locker) {
	h.withStripes(ss, barrier, h.moveSeries)
}

// moveSeries moves those of ss, found naming a sparse symbol table, that
// are still held to the current table: each is replaced by a new Series
// with the same ref, labels, newest sample and log marks. The caller keeps
// Prepare and Commit from running meanwhile, as for GC.
func (h *Head) moveSeries(ss []stripeSeries, minT int64) {
	if len(ss) == 0 {
		return
	}
	moved := make([]*Series, 0, len(ss))
	var buf []byte
	var ten *tenant
	for _, x := range ss {
		old := x.s
		x.st.mu.Lock()
		// Removed, expired (GC takes it), or on the current table (its
		// sparse table retired and a new current one took the slot since
		// it was found): not moved.
		if old.Removed() || old.t.Load() < minT || symbols.of(old.flags.Load()) == symbols.current.Load() {
			x.st.mu.Unlock()
			continue
		}
		buf = old.AppendLabels(buf[:0])
		s := newSeries(buf)
		s.hash, s.tenant, s.ref = old.hash, old.tenant, old.ref
		s.flags.Or(old.flags.Load() & flagLogged)
		s.base.Store(old.base.Load())
		s.t.Store(old.t.Load()) // writers are kept out: no sequence lock
		s.v.Store(old.v.Load())
		x.st.series.replace(old, s)
		h.famMu.Lock()
		s.famIdx = old.famIdx
		h.families[old.metricName()].series[s.famIdx] = s
		h.famMu.Unlock()
		old.flags.Or(flagRemoved | flagMoved)
		x.st.mu.Unlock()
		if k := old.key.Load(); k != 0 {
			if ten == nil || ten.idx != old.tenant {
				ten = h.tenant(old.Tenant())
			}
			ten.memo.replace(k, old, s)
		}
		moved = append(moved, old)
	}
	h.metrics.moved.Add(float64(len(moved)))
	forgetSeries(moved)
}

// Remove drops the given series from the head (those still held, or the
// series that replaced them when they were moved to another symbol table;
// a series removed already is skipped). The caller keeps Prepare and
// Commit from running meanwhile, as for GC, and holds a SymbolPin from
// before it got the series if they may have been moved since.
func (h *Head) Remove(ss []*Series) {
	removed := make([]*Series, 0, len(ss))
	var buf []byte
	for _, s := range ss {
		st := &h.stripes[s.hash&(stripeCount-1)]
		st.mu.Lock()
		s, buf = st.held(s, buf)
		if s != nil && st.series.remove(s) {
			s.flags.Or(flagRemoved)
			h.removeFromFamilies([]*Series{s})
			removed = append(removed, s)
		}
		st.mu.Unlock()
	}
	h.uncount(removed)
}

// AppendUnchanged appends to dst the series held in the place of each
// ss[i] (see Held) whose newest sample is still at ts[i], and returns it:
// those a handoff may drop once it has forwarded that sample. A series
// given a newer sample since was pushed while the handoff ran, and that
// push was answered; it stays for a later handoff to forward. The caller
// keeps Commit from running meanwhile and holds a SymbolPin from before
// it got ss.
func (h *Head) AppendUnchanged(dst []*Series, ss []*Series, ts []int64) []*Series {
	for i, s := range ss {
		if s = h.Held(s); s != nil {
			if t, _ := s.Latest(); t == ts[i] {
				dst = append(dst, s)
			}
		}
	}
	return dst
}

// Held returns the series held in s's place: s if it is held, the series
// that replaced it if it was moved to another symbol table (see "Label
// storage" in the package documentation), else nil. The caller holds a
// SymbolPin from before it got s.
func (h *Head) Held(s *Series) *Series {
	st := &h.stripes[s.hash&(stripeCount-1)]
	st.mu.Lock()
	defer st.mu.Unlock()
	s, _ = st.held(s, nil)
	return s
}

// held is Held for st, s's stripe, which the caller has locked; buf is
// scratch space, returned for reuse.
func (st *stripe) held(s *Series, buf []byte) (*Series, []byte) {
	f := s.flags.Load()
	if f&flagRemoved == 0 {
		return s, buf
	}
	if f&flagMoved == 0 {
		return nil, buf
	}
	// Its replacement, or the one that replaced that, has its labels and
	// ref; another series of the same labels made since has another ref.
	buf = s.AppendLabels(buf[:0])
	if r := st.get(s.hash, buf); r != nil && r.ref == s.ref {
		return r, buf
	}
	return nil, buf
}

// uncount takes removed series off their tenants' and the head's counts.
func (h *Head) uncount(removed []*Series) {
	var ten *tenant
	for _, s := range removed {
		if ten == nil || ten.idx != s.tenant {
			ten = h.tenant(s.Tenant())
		}
		ten.series.Add(-1)
		if k := s.key.Load(); k != 0 {
			ten.memo.delete(k, s)
		}
	}
	h.numSeries.Add(-int64(len(removed)))
	h.metrics.removed.Add(float64(len(removed)))
	forgetSeries(removed) // last: the memo no longer finds them
}

func (h *Head) removeFromFamilies(ss []*Series) {
	h.famMu.Lock()
	defer h.famMu.Unlock()
	for _, s := range ss {
		name := s.metricName()
		f := h.families[name]
		last := len(f.series) - 1
		moved := f.series[last]
		f.series[s.famIdx] = moved
		moved.famIdx = s.famIdx
		f.series[last] = nil
		f.series = f.series[:last]
		if last == 0 {
			delete(h.families, name)
		}
	}
}
