package fuzz

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/gateway/federate"
	"github.com/fedgate/fedgate/wal/head"
)

// FuzzFederate pushes fuzzed series through the write handler, so that
// the head holds only what the write path admits, then scrapes /federate
// with match[]={__name__=~".+"} and parses the answer with the reference
// text parser (expfmt, legacy name validation). The parse must succeed,
// and every held, visible, non-stale series must come back exactly once,
// nothing else: the same labels (__name__ as the family, instance=""
// added when absent), the same value (bit for bit; any NaN as NaN) and
// timestamp.
//
// With raw, the bytes are a WriteRequest protobuf as sent (seeded with the
// captured payloads); otherwise they describe series (see fuzzedRequest),
// so that names are mostly valid and the values and timestamps reach the
// exposition writer.
func FuzzFederate(f *testing.F) {
	for _, b := range capturedSeeds(f, maxHandlerSeed) {
		f.Add(b, true)
	}
	f.Add([]byte("\x03\x04up\x02\x00\x01\x00\x03job\x01\x22\x02\x05\x00"), false)
	f.Add([]byte("\x05\x06a:b_c9\x03\x01x\x04\x5c\x22\x0a\xe2\x00\x02\x01\x07\x03\x10"), false)
	f.Add([]byte("\x02\x01m\x01\x10instance\x00\x03\x00\x01\x02\x03\x04"), false)
	f.Add([]byte{}, false)

	f.Fuzz(func(t *testing.T, b []byte, raw bool) {
		if len(b) > maxHandlerInput {
			t.Skip("input over the size cap")
		}
		if !raw {
			var err error
			if b, err = fuzzedRequest(b).Marshal(); err != nil {
				t.Fatal(err)
			}
		}
		h, hd := newFuzzHandler(t)
		if code := postWrite(h, snappy.Encode(nil, b)); code >= 500 {
			t.Fatalf("write answered %d", code)
		}
		want := map[string]exposed{}
		minT := hd.MinTime()
		for _, s := range hd.AppendAllSeries(nil) {
			ts, v := s.Latest()
			if !s.Committed() || ts < minT || head.IsStale(v) {
				continue
			}
			want[exposedKey(s.Labels())] = exposed{t: ts, v: v}
		}
		got := scrapeFederate(t, federate.NewHandler(hd, slog.New(slog.DiscardHandler), nil))
		for k, e := range want {
			g, ok := got[k]
			switch {
			case !ok:
				t.Errorf("series %s held but not federated", k)
			case g.t != e.t || !sameValue(g.v, e.v):
				t.Errorf("series %s federated as %v @%d, held as %v (%#x) @%d", k, g.v, g.t, e.v, math.Float64bits(e.v), e.t)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("series %s federated but not held (or stale, or expired)", k)
			}
		}
	})
}

type exposed struct {
	t int64
	v float64
}

func sameValue(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Float64bits(a) == math.Float64bits(b)
}

// exposedKey renders a held label set as /federate exposes it.
func exposedKey(ls head.Labels) string {
	var pairs [][2]string
	hasInstance := false
	for it := ls.Iter(); it.Next(); {
		pairs = append(pairs, [2]string{it.Name, it.Value})
		hasInstance = hasInstance || it.Name == "instance"
	}
	if !hasInstance {
		pairs = append(pairs, [2]string{"instance", ""})
	}
	return labelKey(pairs)
}

func labelKey(pairs [][2]string) string {
	slices.SortFunc(pairs, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	var sb strings.Builder
	for _, p := range pairs {
		fmt.Fprintf(&sb, "%s=%q,", p[0], p[1])
	}
	return sb.String()
}

// scrapeFederate scrapes h for every series and parses the answer with
// expfmt, keyed as exposedKey keys held series.
func scrapeFederate(t *testing.T, h http.Handler) map[string]exposed {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/federate?"+url.Values{"match[]": {`{__name__=~".+"}`}}.Encode(), nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("/federate answered %d: %s", w.Code, w.Body)
	}
	body := w.Body.String()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /federate: %v\n%s", err, body)
	}
	got := map[string]exposed{}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			pairs := [][2]string{{"__name__", name}}
			for _, l := range m.GetLabel() {
				pairs = append(pairs, [2]string{l.GetName(), l.GetValue()})
			}
			k := labelKey(pairs)
			if _, dup := got[k]; dup {
				t.Errorf("series %s federated twice", k)
			}
			if m.Untyped == nil || m.TimestampMs == nil {
				t.Fatalf("series %s federated without an untyped value and timestamp\n%s", k, body)
			}
			got[k] = exposed{t: m.GetTimestampMs(), v: m.GetUntyped().GetValue()}
		}
	}
	return got
}

// fuzzedRequest reads a WriteRequest out of b, a byte at a time (zero once
// b is used up): per series, a metric name, labels (names mostly valid,
// values arbitrary bytes) and samples whose values favour the special ones
// (NaN, stale NaN, ±Inf, -0) and whose timestamps lie around fuzzNow.
func fuzzedRequest(b []byte) *prompb.WriteRequest {
	r := &byteReader{b: b}
	var wr prompb.WriteRequest
	for range 1 + int(r.next())%6 {
		if len(r.b) == 0 {
			break
		}
		var s prompb.TimeSeries
		s.Labels = append(s.Labels, prompb.Label{Name: "__name__", Value: r.name(metricChars)})
		for range int(r.next()) % 5 {
			var name string
			if c := r.next(); c < 64 {
				name = []string{"instance", "job", fuzzCluster, "a", "__x", "instancf", "i"}[int(c)%7]
			} else {
				name = r.name(labelChars)
			}
			s.Labels = append(s.Labels, prompb.Label{Name: name, Value: string(r.bytes(int(r.next()) % 16))})
		}
		for range 1 + int(r.next())%3 {
			s.Samples = append(s.Samples, prompb.Sample{Value: r.value(), Timestamp: fuzzNow.UnixMilli() - r.offset()})
		}
		wr.Timeseries = append(wr.Timeseries, s)
	}
	return &wr
}

const (
	metricChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:0123456789"
	labelChars  = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ__0123456789"
)

type byteReader struct{ b []byte }

func (r *byteReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *byteReader) bytes(n int) []byte {
	n = min(n, len(r.b))
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// name reads a length and that many characters of chars; a leading digit
// makes it invalid, which the write path refuses.
func (r *byteReader) name(chars string) string {
	n := 1 + int(r.next())%10
	out := make([]byte, n)
	for i := range out {
		out[i] = chars[int(r.next())%len(chars)]
	}
	return string(out)
}

func (r *byteReader) value() float64 {
	switch r.next() % 8 {
	case 0:
		return math.NaN()
	case 1:
		return math.Float64frombits(head.StaleNaN)
	case 2:
		return math.Inf(1)
	case 3:
		return math.Inf(-1)
	case 4:
		return math.Copysign(0, -1)
	case 5:
		return float64(int8(r.next()))
	}
	var bits uint64
	for range 8 {
		bits = bits<<8 | uint64(r.next())
	}
	return math.Float64frombits(bits)
}

// offset reads how far before fuzzNow a sample lies: usually close,
// sometimes in the future or far in the past.
func (r *byteReader) offset() int64 {
	switch c := r.next(); c % 4 {
	case 0:
		return int64(c)
	case 1:
		return -int64(c) * 10_000 // up to about 40 minutes ahead
	case 2:
		var v int64
		for range 8 {
			v = v<<8 | int64(r.next())
		}
		return v
	}
	return int64(r.next())<<16 | int64(r.next())<<8 | int64(r.next())
}
