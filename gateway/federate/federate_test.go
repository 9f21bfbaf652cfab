package federate

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fedgate/fedgate/wal/head"
)

var now = time.UnixMilli(1_700_000_000_000)

func newTestHead(t testing.TB, series ...[]string) *head.Head {
	t.Helper()
	hd := head.New(head.Options{Retention: 10 * time.Minute, Now: func() time.Time { return now }}, prometheus.NewRegistry())
	for i, kv := range series {
		appendSeries(t, hd, now.UnixMilli()-int64(i), float64(i), kv...)
	}
	return hd
}

// appendSeries stores one sample; kv must be sorted by name.
func appendSeries(t testing.TB, hd *head.Head, ts int64, v float64, kv ...string) {
	t.Helper()
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		b = head.AppendLabel(b, kv[i], kv[i+1])
	}
	if err := hd.Append(context.Background(), &head.Batch{Tenant: "t", Series: []head.BatchSeries{{Labels: b, Samples: []head.Sample{{T: ts, V: v}}}}}); err != nil {
		t.Fatal(err)
	}
}

func get(t testing.TB, h http.Handler, gz bool, match ...string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	q := make([]string, 0, len(match))
	for _, m := range match {
		q = append(q, "match[]="+urlEscape(m))
	}
	r := httptest.NewRequest(http.MethodGet, "/federate?"+strings.Join(q, "&"), nil)
	if gz {
		r.Header.Set("Accept-Encoding", "gzip")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	body := w.Body.String()
	if w.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		body = string(b)
	}
	return w, body
}

func urlEscape(s string) string {
	return strings.NewReplacer("%", "%25", "&", "%26", "+", "%2B", "#", "%23", " ", "%20", "{", "%7B", "}", "%7D", "\"", "%22", "=", "%3D", "~", "%7E", "|", "%7C").Replace(s)
}

func newHandler(src Source) *Handler {
	return NewHandler(src, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
}

// parse reads the exposition with Prometheus' own text parser and returns
// every sample as "name{sorted labels} value @ts".
func parse(t testing.TB, body string) []string {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("expfmt cannot parse the output: %v\n%s", err, body)
	}
	var out []string
	for name, f := range fams {
		if f.GetType() != dto.MetricType_UNTYPED {
			t.Errorf("family %s has type %v, want untyped", name, f.GetType())
		}
		for _, m := range f.Metric {
			ls := model.LabelSet{}
			for _, l := range m.Label {
				ls[model.LabelName(l.GetName())] = model.LabelValue(l.GetValue())
			}
			out = append(out, fmt.Sprintf("%s%s %v @%d", name, ls, m.GetUntyped().GetValue(), m.GetTimestampMs()))
		}
	}
	slices.Sort(out)
	return out
}

func TestFederateOutput(t *testing.T) {
	hd := newTestHead(t,
		[]string{"__name__", "up", "cluster_id", "a", "instance", "node-1:9100", "job", "node"},
		[]string{"__name__", "up", "cluster_id", "b", "job", "agent"},
		[]string{"__name__", "weird", "a", "quote\" backslash\\ newline\n", "cluster_id", "a"},
		[]string{"__name__", "http_requests_total", "cluster_id", "a", "code", "200", "zone", "z"},
	)
	appendSeries(t, hd, now.UnixMilli(), math.Inf(1), "__name__", "inf", "cluster_id", "a")
	appendSeries(t, hd, now.UnixMilli(), math.Float64frombits(head.StaleNaN), "__name__", "stale", "cluster_id", "a")
	// Held, but past retention by the time of the scrape: the head's clock
	// moves on below, GC has not run.
	appendSeries(t, hd, now.UnixMilli()-9*60*1000, 1, "__name__", "expired", "cluster_id", "a")
	if len(hd.AppendFamily(nil, "expired")) != 1 {
		t.Fatal("the expired series was not created")
	}
	h := newHandler(&laterClock{Head: hd, by: 2 * time.Minute})

	for _, gz := range []bool{false, true} {
		w, body := get(t, h, gz, `{__name__=~".+"}`)
		if w.Code != 200 || w.Header().Get("Content-Type") != contentType {
			t.Fatalf("got %d %q", w.Code, w.Header().Get("Content-Type"))
		}
		if gz != (w.Header().Get("Content-Encoding") == "gzip") {
			t.Fatalf("gzip=%v but Content-Encoding %q", gz, w.Header().Get("Content-Encoding"))
		}
		got := parse(t, body)
		ms := now.UnixMilli()
		want := []string{
			fmt.Sprintf(`http_requests_total{cluster_id="a", code="200", instance="", zone="z"} 3 @%d`, ms-3),
			fmt.Sprintf(`inf{cluster_id="a", instance=""} +Inf @%d`, ms),
			fmt.Sprintf(`up{cluster_id="a", instance="node-1:9100", job="node"} 0 @%d`, ms),
			fmt.Sprintf(`up{cluster_id="b", instance="", job="agent"} 1 @%d`, ms-1),
			fmt.Sprintf(`weird{a="quote\" backslash\\ newline\n", cluster_id="a", instance=""} 2 @%d`, ms-2),
		}
		if !slices.Equal(got, want) {
			t.Fatalf("gzip=%v: got\n%s\nwant\n%s\nraw:\n%s", gz, strings.Join(got, "\n"), strings.Join(want, "\n"), body)
		}
		// Families are grouped, sorted, each under one TYPE line.
		var types []string
		for line := range strings.SplitSeq(body, "\n") {
			if strings.HasPrefix(line, "# TYPE ") {
				types = append(types, line)
			}
		}
		if !slices.Equal(types, []string{"# TYPE http_requests_total untyped", "# TYPE inf untyped", "# TYPE up untyped", "# TYPE weird untyped"}) {
			t.Fatalf("TYPE lines: %q", types)
		}
	}
}

// laterClock is a head seen from a clock that has moved on by "by".
type laterClock struct {
	*head.Head
	by time.Duration
}

func (l *laterClock) MinTime() int64 { return l.Head.MinTime() + l.by.Milliseconds() }

func TestFederateSelectors(t *testing.T) {
	hd := newTestHead(t,
		[]string{"__name__", "up", "cluster_id", "a", "job", "node"},
		[]string{"__name__", "up", "cluster_id", "b", "job", "agent"},
		[]string{"__name__", "node_load1", "cluster_id", "a", "job", "node"},
		[]string{"__name__", "go_goroutines", "cluster_id", "b", "job", "agent"},
	)
	h := newHandler(hd)
	names := func(body string) []string {
		var out []string
		for _, s := range parse(t, body) {
			out = append(out, s[:strings.Index(s, "} ")+1])
		}
		return out
	}
	cases := []struct {
		match []string
		want  []string
	}{
		{[]string{`up`}, []string{`up{cluster_id="a", instance="", job="node"}`, `up{cluster_id="b", instance="", job="agent"}`}},
		{[]string{`{job="node"}`}, []string{`node_load1{cluster_id="a", instance="", job="node"}`, `up{cluster_id="a", instance="", job="node"}`}},
		{[]string{`{__name__=~"node_.*|go_.*"}`}, []string{`go_goroutines{cluster_id="b", instance="", job="agent"}`, `node_load1{cluster_id="a", instance="", job="node"}`}},
		{[]string{`up{cluster_id="b"}`, `node_load1`}, []string{`node_load1{cluster_id="a", instance="", job="node"}`, `up{cluster_id="b", instance="", job="agent"}`}},
		{[]string{`up`, `{cluster_id="a",job="node"}`}, []string{`node_load1{cluster_id="a", instance="", job="node"}`, `up{cluster_id="a", instance="", job="node"}`, `up{cluster_id="b", instance="", job="agent"}`}},
		{[]string{`{job=~".+",instance=""}`}, []string{`go_goroutines{cluster_id="b", instance="", job="agent"}`, `node_load1{cluster_id="a", instance="", job="node"}`, `up{cluster_id="a", instance="", job="node"}`, `up{cluster_id="b", instance="", job="agent"}`}},
		{[]string{`up{job!~"n.*"}`}, []string{`up{cluster_id="b", instance="", job="agent"}`}},
		{[]string{`nothing_here`}, nil},
	}
	for _, c := range cases {
		w, body := get(t, h, false, c.match...)
		if got := names(body); w.Code != 200 || !slices.Equal(got, c.want) {
			t.Errorf("match %q: got %d %q, want %q", c.match, w.Code, got, c.want)
		}
	}
	if w, body := get(t, h, false); w.Code != 200 || body != "" {
		t.Errorf("no match[]: got %d %q, want an empty 200", w.Code, body)
	}
	// As Prometheus: matchers that all match the empty string select every
	// series; "{}" selects none.
	all := []string{`go_goroutines{cluster_id="b", instance="", job="agent"}`, `node_load1{cluster_id="a", instance="", job="node"}`, `up{cluster_id="a", instance="", job="node"}`, `up{cluster_id="b", instance="", job="agent"}`}
	for match, want := range map[string][]string{`{__name__=~".*"}`: all, `{job=~".*"}`: all, `{}`: nil, `{}&match[]=up`: {all[2], all[3]}} {
		ms := strings.Split(match, "&match[]=")
		if w, body := get(t, h, false, ms...); w.Code != 200 || !slices.Equal(names(body), want) {
			t.Errorf("match %q: got %d %q, want %q", ms, w.Code, names(body), want)
		}
	}
	for _, bad := range []string{`up{`, `rate(up[5m])`, `{job=~"("}`} {
		if w, body := get(t, h, false, bad); w.Code != 400 || strings.Count(body, "\n") > 1 {
			t.Errorf("match %q: got %d %q, want a one-line 400", bad, w.Code, body)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{
		"gzip": true, "deflate, gzip": true, "gzip;q=0.5": true, "*": true, "gzip;q=0": false,
		"gzip; q=0.0": false, "identity": false, "": false, "deflate": false,
		// gzip named wins over "*", in either order; names ignore case.
		"*, gzip;q=0": false, "gzip;q=0, *": false, "*;q=0, gzip": true, "GZIP": true, "*;q=0": false,
	} {
		if got := acceptsGzip(h); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", h, got, want)
		}
	}
}

type countingWriter struct {
	hdr http.Header
	n   int
}

func (c *countingWriter) Header() http.Header         { return c.hdr }
func (c *countingWriter) Write(b []byte) (int, error) { c.n += len(b); return len(b), nil }
func (c *countingWriter) WriteHeader(int)             {}

// TestFederateStreams: serving a large response allocates far less than the
// response's size.
func TestFederateStreams(t *testing.T) {
	hd := newTestHead(t)
	for i := range 20000 {
		appendSeries(t, hd, now.UnixMilli(), float64(i), "__name__", fmt.Sprintf("metric_%d", i%50),
			"cluster_id", "a", "instance", fmt.Sprintf("host-%d.example.org:9100", i), "job", "node-exporter")
	}
	h := newHandler(hd)
	r := httptest.NewRequest(http.MethodGet, `/federate?match[]={job="node-exporter"}`, nil)
	h.ServeHTTP(&countingWriter{hdr: http.Header{}}, r) // warm the pools
	var before, after runtime.MemStats
	w := &countingWriter{hdr: http.Header{}}
	runtime.ReadMemStats(&before)
	h.ServeHTTP(w, r)
	runtime.ReadMemStats(&after)
	if w.n < 1<<20 {
		t.Fatalf("response of only %d bytes", w.n)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(w.n)/10 {
		t.Fatalf("a %d-byte response allocated %d bytes", w.n, alloc)
	}
}

func TestFederateOnlyOwned(t *testing.T) {
	hd := newTestHead(t)
	for _, tenant := range []string{"mine", "moved"} {
		var b []byte
		b = head.AppendLabel(b, "__name__", "up")
		b = head.AppendLabel(b, "cluster_id", tenant)
		if err := hd.Append(context.Background(), &head.Batch{Tenant: tenant, Series: []head.BatchSeries{{Labels: b, Samples: []head.Sample{{T: now.UnixMilli(), V: 1}}}}}); err != nil {
			t.Fatal(err)
		}
	}
	h := newHandler(hd)
	h.OnlyOwned(func(tenant string) bool { return tenant == "mine" })
	_, body := get(t, h, false, `up`)
	if got := parse(t, body); len(got) != 1 || !strings.Contains(got[0], `cluster_id="mine"`) {
		t.Fatalf("served %q, want only the owned tenant's series", got)
	}
}
