package federate

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/fedgate/fedgate/gateway/config"
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

type state struct {
	bw     *bufio.Writer
	gz     *gzip.Writer
	line   []byte
	names  []string
	series []*head.Series
}

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
		return &state{bw: bufio.NewWriterSize(nil, 64<<10)}
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
		if st.gz == nil {
			st.gz, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		} else {
			st.gz.Reset(w)
		}
		out = st.gz
	}
	st.bw.Reset(out)
	n, err := h.write(st, sel)
	if err == nil {
		err = st.bw.Flush()
	}
	if err == nil && gzipped {
		err = st.gz.Close()
	}
	st.bw.Reset(nil)
	if st.gz != nil {
		st.gz.Reset(io.Discard)
	}
	h.metrics.series.Add(float64(n))
	if err != nil {
		h.metrics.errors.Inc()
		h.logger.Debug("federate response cut short", "err", err, "remote", r.RemoteAddr)
	}
}

// acceptsGzip reports whether an Accept-Encoding header admits gzip: named
// (or "*") with a q-value that is absent or above zero.
func acceptsGzip(h string) bool {
	for part := range strings.SplitSeq(h, ",") {
		enc, params, _ := strings.Cut(part, ";")
		enc = strings.TrimSpace(enc)
		if enc != "gzip" && enc != "*" {
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
		return q > 0
	}
	return false
}

// selector is one match[] argument: the matchers on __name__, evaluated per
// family, and the others, evaluated per series.
type selector struct {
	name   []*labels.Matcher
	others []*labels.Matcher
}

func parseSelectors(args []string) ([]selector, error) {
	sels := make([]selector, 0, len(args))
	for _, a := range args {
		ms, err := config.ParseSelector(a)
		if err != nil {
			return nil, fmt.Errorf("match[]: %w", err)
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

// write streams every matching series and returns how many it wrote.
func (h *Handler) write(st *state, sels []selector) (int, error) {
	if len(sels) == 0 {
		return 0, nil
	}
	minT := h.src.MinTime()
	// The pooled snapshot must not keep removed series alive.
	defer func() { clear(st.series[:cap(st.series)]) }()
	st.names = h.src.AppendFamilyNames(st.names[:0])
	written := 0
	active := make([]*selector, 0, len(sels))
	var owned map[string]bool // per tenant, decided once per scrape
	if h.owned != nil {
		owned = make(map[string]bool)
	}
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
		st.series = h.src.AppendFamily(st.series[:0], name)
		typed := false
		for _, s := range st.series {
			t, v := s.Latest()
			if t < minT || head.IsStale(v) || !matchAny(active, s.Labels()) {
				continue
			}
			if owned != nil {
				o, ok := owned[s.Tenant()]
				if !ok {
					o = h.owned(s.Tenant())
					owned[s.Tenant()] = o
				}
				if !o {
					continue
				}
			}
			if !typed {
				st.line = append(append(append(st.line[:0], "# TYPE "...), name...), " untyped\n"...)
				if _, err := st.bw.Write(st.line); err != nil {
					return written, err
				}
				typed = true
			}
			st.line = appendSample(st.line[:0], name, s.Labels(), t, v)
			if _, err := st.bw.Write(st.line); err != nil {
				return written, err
			}
			written++
		}
	}
	return written, nil
}

func matchAll(ms []*labels.Matcher, v string) bool {
	for _, m := range ms {
		if !m.Matches(v) {
			return false
		}
	}
	return true
}

func matchAny(sels []*selector, ls head.Labels) bool {
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

// appendSample appends one exposition line:
//
//	name{a="1",instance="",z="2"} value timestamp\n
//
// with labels in sorted order, __name__ left out and instance="" added where
// the series has no instance label.
func appendSample(b []byte, name string, ls head.Labels, t int64, v float64) []byte {
	b = append(b, name...)
	b = append(b, '{')
	first, instance := true, false
	for it := ls.Iter(); it.Next(); {
		if it.Name == labels.MetricName {
			continue
		}
		if !instance && it.Name >= instanceLabel {
			instance = true
			if it.Name != instanceLabel {
				b, first = appendLabel(b, first, instanceLabel, "")
			}
		}
		b, first = appendLabel(b, first, it.Name, it.Value)
	}
	if !instance {
		b, _ = appendLabel(b, first, instanceLabel, "")
	}
	b = append(b, "} "...)
	b = appendFloat(b, v)
	b = append(b, ' ')
	b = strconv.AppendInt(b, t, 10)
	return append(b, '\n')
}

func appendLabel(b []byte, first bool, name, value string) ([]byte, bool) {
	if !first {
		b = append(b, ',')
	}
	b = append(b, name...)
	b = append(b, '=', '"')
	b = appendEscaped(b, value)
	return append(b, '"'), false
}

// appendEscaped escapes a label value as the text format requires:
// backslash, double quote and line feed.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '\\':
			esc = `\\`
		case '"':
			esc = `\"`
		case '\n':
			esc = `\n`
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		start = i + 1
	}
	return append(b, s[start:]...)
}

func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
