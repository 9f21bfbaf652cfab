package federate

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/fedgate/fedgate/wal/head"
)

// Source is what federation reads: the head.
type Source interface {
	MinTime() int64
	AppendFamilyNames(dst []string) []string
	AppendFamily(dst []*head.Series, name string) []*head.Series
}

// Handler serves /federate.
type Handler struct {
	src     Source
	owned   func(tenant string) bool // nil: every tenant
	logger  *slog.Logger
	metrics metrics
	bufs    sync.Pool // of *state
}

type metrics struct {
	duration prometheus.Histogram
	series   prometheus.Counter
	errors   prometheus.Counter
}

// state is one response's buffers, pooled.
type state struct {
	gz      *gzip.Writer  // nil until the first gzip'd response
	gzOut   *bufio.Writer // between gz and the response: deflate writes a few hundred bytes at a time
	buf     []byte        // lines not yet written out; see flushSize
	names   []string
	series  []*head.Series
	pending []pending
	sink    byte // see read
}

// pending is a series to be written, with its newest sample and its labels
// (read with the sample, so that later loops need not visit s again).
type pending struct {
	s *head.Series
	t int64
	v float64
}

// flushSize is how much text is rendered into state.buf before it goes to
// the response (or the gzip writer) in one Write.
const flushSize = 64 << 10

// gzipOutSize is the compressed bytes gathered before a write to the
// connection: one write a few dozen per megabyte of text, not thousands.
const gzipOutSize = 64 << 10

// readAhead is how many series are read before they are written. Series
// and their labels lie all over the heap, so the first read of each is a
// cache miss: in loops that only read, the misses of many series overlap,
// where writing each line in between would leave them one after the other.
// A batch stays small enough to remain in cache until it is written.
const readAhead = 128

// OnlyOwned makes the handler serve only the series of tenants for which
// owned is true: after a membership change, the tenants that moved away
// leave this instance's /federate at once, before their handoff is done.
// Call it before serving.
func (h *Handler) OnlyOwned(owned func(tenant string) bool) { h.owned = owned }

// NewHandler returns a /federate handler reading src.
func NewHandler(src Source, logger *slog.Logger, reg prometheus.Registerer) *Handler {
	h := &Handler{src: src, logger: logger}
	h.metrics = metrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fedgate_federate_duration_seconds",
			Help:    "Time taken to serve a /federate request.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
		series: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_federate_series_written_total",
			Help: "Series written in /federate responses.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedgate_federate_errors_total",
			Help: "/federate responses cut short by a write error.",
		}),
	}
	if reg != nil {
		reg.MustRegister(h.metrics.duration, h.metrics.series, h.metrics.errors)
	}
	h.bufs.New = func() any {
		return &state{buf: make([]byte, 0, 2*flushSize)}
	}
	return h
}

// instanceLabel is added, empty, to series that lack it.
const instanceLabel = "instance"

const contentType = "text/plain; version=0.0.4; charset=utf-8"

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { h.metrics.duration.Observe(time.Since(start).Seconds()) }()
	if err := r.ParseForm(); err != nil {
		http.Error(w, fmt.Sprintf("parse form: %v", err), http.StatusBadRequest)
		return
	}
	sel, err := parseSelectors(r.Form["match[]"])
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", contentType)
	st := h.bufs.Get().(*state)
	defer h.bufs.Put(st)

	w.Header().Set("Vary", "Accept-Encoding")
	var out io.Writer = w
	gzipped := acceptsGzip(r.Header.Get("Accept-Encoding"))
	if gzipped {
		w.Header().Set("Content-Encoding", "gzip")
		// BestSpeed: deflate is most of the CPU a scrape costs, and the
		// text still shrinks about 6:1.
		if st.gz == nil {
			st.gzOut = bufio.NewWriterSize(w, gzipOutSize)
			st.gz, _ = gzip.NewWriterLevel(st.gzOut, gzip.BestSpeed)
		} else {
			st.gzOut.Reset(w)
			st.gz.Reset(st.gzOut)
		}
		out = st.gz
	}
	n, err := h.write(st, out, sel)
	if err == nil && gzipped {
		if err = st.gz.Close(); err == nil {
			err = st.gzOut.Flush()
		}
	}
	if st.gz != nil {
		st.gzOut.Reset(io.Discard)
		st.gz.Reset(st.gzOut)
	}
	h.metrics.series.Add(float64(n))
	if err != nil {
		h.metrics.errors.Inc()
		h.logger.Debug("federate response cut short", "err", err, "remote", r.RemoteAddr)
	}
}

// acceptsGzip reports whether an Accept-Encoding header admits gzip: named
// with a q-value that is absent or above zero, or, when gzip is not named,
// "*" so. Names are case-insensitive; gzip named overrides "*" (RFC 9110,
// 12.5.3), whatever their order.
func acceptsGzip(h string) bool {
	gzip, star := -1.0, -1.0 // q-values; -1: not named
	for part := range strings.SplitSeq(h, ",") {
		enc, params, _ := strings.Cut(part, ";")
		enc = strings.TrimSpace(enc)
		if !strings.EqualFold(enc, "gzip") && enc != "*" {
			continue
		}
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.TrimSpace(k) == "q" {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		if enc == "*" {
			star = q
		} else {
			gzip = q
		}
	}
	if gzip >= 0 {
		return gzip > 0
	}
	return star > 0
}

// selector is one match[] argument: the matchers on __name__, evaluated per
// family, and the others, evaluated per series.
type selector struct {
	name   []*labels.Matcher
	others []*labels.Matcher
}

// parseSelectors parses the match[] arguments as Prometheus' /federate
// does (parser.ParseMetricSelector): matchers that all match the empty
// string, as in {__name__=~".*"}, are taken, and select every series; "{}",
// with none, selects none, as Prometheus' storage gives none for it.
func parseSelectors(args []string) ([]selector, error) {
	sels := make([]selector, 0, len(args))
	for _, a := range args {
		ms, err := parser.ParseMetricSelector(a)
		if err != nil {
			return nil, fmt.Errorf("match[]: bad selector %q: %w", a, err)
		}
		if len(ms) == 0 {
			continue
		}
		var s selector
		for _, m := range ms {
			if m.Name == labels.MetricName {
				s.name = append(s.name, m)
			} else {
				s.others = append(s.others, m)
			}
		}
		sels = append(sels, s)
	}
	return sels, nil
}

// write streams every matching series to out and returns how many it
// wrote.
func (h *Handler) write(st *state, out io.Writer, sels []selector) (int, error) {
	if len(sels) == 0 {
		return 0, nil
	}
	minT := h.src.MinTime()
	// The pooled snapshots must not keep removed series alive.
	defer func() {
		clear(st.series[:cap(st.series)])
		clear(st.pending[:cap(st.pending)])
	}()
	st.names = h.src.AppendFamilyNames(st.names[:0])
	st.buf = st.buf[:0]
	written := 0
	active := make([]*selector, 0, len(sels))
	owned := ownership{owned: h.owned}
	for _, name := range st.names {
		active = active[:0]
		for i := range sels {
			if matchAll(sels[i].name, name) {
				active = append(active, &sels[i])
			}
		}
		if len(active) == 0 {
			continue
		}
		if err := h.writeFamily(st, out, name, active, minT, &owned, &written); err != nil {
			return written, err
		}
	}
	return written, st.flush(out, 1)
}

// writeFamily writes the matching series of family name.
func (h *Handler) writeFamily(st *state, out io.Writer, name string, active []*selector, minT int64, owned *ownership, written *int) error {
	// The family's series stay readable while they are written, even if
	// they are removed meanwhile.
	pin := head.PinSymbols()
	defer pin.Release()
	st.series = h.src.AppendFamily(st.series[:0], name)
	typed := false
	for batch := range slices.Chunk(st.series, readAhead) {
		st.read(batch, func(p pending) bool {
			return p.t >= minT && !head.IsStale(p.v) && matchAny(active, p.s.Iter()) && owned.of(p.s.Tenant())
		})
		if len(st.pending) > 0 && !typed {
			st.buf = append(append(append(st.buf, "# TYPE "...), name...), " untyped\n"...)
			typed = true
		}
		for _, p := range st.pending {
			st.buf = appendSample(st.buf, name, p.s.Iter(), p.t, p.v)
			*written++
			if err := st.flush(out, flushSize); err != nil {
				return err
			}
		}
	}
	return nil
}

// read sets st.pending to the series of batch that visible admits, with
// their newest samples, and brings their labels into cache. Series lie all
// over the heap, so the first read of each is a cache miss: read visits
// each in loops that only read, so that the misses of many series overlap
// (see readAhead), and the loops after it find them in cache.
func (st *state) read(batch []*head.Series, visible func(pending) bool) {
	st.pending = st.pending[:0]
	for _, s := range batch {
		t, v := s.Latest()
		st.pending = append(st.pending, pending{s: s, t: t, v: v})
	}
	st.pending = slices.DeleteFunc(st.pending, func(p pending) bool { return !visible(p) })
	for _, p := range st.pending {
		st.sink |= p.s.Touch()
	}
}

// flush writes st.buf to out once it holds at least atLeast bytes.
func (st *state) flush(out io.Writer, atLeast int) error {
	if len(st.buf) < atLeast {
		return nil
	}
	_, err := out.Write(st.buf)
	st.buf = st.buf[:0]
	return err
}

// ownership decides once per tenant per scrape whether the tenant's series
// are served. Series of one tenant mostly come in runs (a family lists its
// series in creation order, and a tenant's series are created by its
// batches), so the last answer is kept at hand before the map is asked.
type ownership struct {
	owned     func(tenant string) bool // nil: every tenant
	known     map[string]bool
	last      string
	lastOwned bool
}

func (o *ownership) of(tenant string) bool {
	if o.owned == nil {
		return true
	}
	if tenant == o.last && o.known != nil {
		return o.lastOwned
	}
	own, ok := o.known[tenant]
	if !ok {
		if o.known == nil {
			o.known = make(map[string]bool)
		}
		own = o.owned(tenant)
		o.known[tenant] = own
	}
	o.last, o.lastOwned = tenant, own
	return own
}

func matchAll(ms []*labels.Matcher, v string) bool {
	for _, m := range ms {
		if !m.Matches(v) {
			return false
		}
	}
	return true
}

func matchAny(sels []*selector, ls head.LabelIter) bool {
	for _, s := range sels {
		ok := true
		for _, m := range s.others {
			if !m.Matches(ls.Get(m.Name)) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
