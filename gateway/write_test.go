package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/turns"
	"github.com/fedgate/fedgate/wal/head"
)

var testNow = time.UnixMilli(1_700_000_000_000)

func testConfig(t testing.TB) *config.File {
	t.Helper()
	f, err := config.Parse([]byte(`
tenants:
  - {id: cluster-a, token: token-a}
  - {id: cluster-b, token: token-b, limits: {max_labels_per_series: 4, max_request_bytes: 4096, max_request_body_bytes: 2048}}
`))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func newTestHandler(t testing.TB) (*WriteHandler, *head.Head) {
	t.Helper()
	s, err := NewSettings(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return testNow }
	hd := head.New(head.Options{Retention: 10 * time.Minute, Now: now}, prometheus.NewRegistry())
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewWriteHandler(s, hd, WriteOptions{Now: now, Head: hd}, logger, prometheus.NewRegistry()), hd
}

func series(value float64, ts int64, kv ...string) prompb.TimeSeries {
	s := prompb.TimeSeries{Samples: []prompb.Sample{{Value: value, Timestamp: ts}}}
	for i := 0; i < len(kv); i += 2 {
		s.Labels = append(s.Labels, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return s
}

func encode(t testing.TB, ts ...prompb.TimeSeries) []byte {
	t.Helper()
	b, err := (&prompb.WriteRequest{Timeseries: ts}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, b)
}

type post struct {
	body            []byte
	token           string
	user, pass      string
	contentType     string
	contentEncoding string
}

// do sends the request over real HTTP to h and returns the answer, read
// whole.
func (p post) do(h http.Handler) *httptest.ResponseRecorder {
	srv := httptest.NewServer(h)
	defer srv.Close()
	r, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", bytes.NewReader(p.body))
	if err != nil {
		panic(err)
	}
	r.Header.Set("Content-Type", "application/x-protobuf")
	r.Header.Set("Content-Encoding", "snappy")
	r.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	if p.contentType != "" {
		r.Header.Set("Content-Type", p.contentType)
	}
	if p.contentEncoding != "" {
		r.Header.Set("Content-Encoding", p.contentEncoding)
	}
	switch {
	case p.token != "":
		r.Header.Set("Authorization", "Bearer "+p.token)
	case p.user != "":
		r.SetBasicAuth(p.user, p.pass)
	}
	resp, err := srv.Client().Do(r)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	w := httptest.NewRecorder()
	w.Code = resp.StatusCode
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	_, _ = io.Copy(w.Body, resp.Body)
	return w
}

// held returns the newest value held for a series, as /federate would see it.
func held(hd *head.Head, kv ...string) (float64, int64, bool) {
	var want []byte
	for i := 0; i < len(kv); i += 2 {
		want = head.AppendLabel(want, kv[i], kv[i+1])
	}
	for _, s := range hd.AppendFamily(nil, head.Labels(want).Get("__name__")) {
		if string(s.Labels()) == string(want) {
			t, v := s.Latest()
			return v, t, true
		}
	}
	return 0, 0, false
}

func TestWriteStatusCodes(t *testing.T) {
	now := testNow.UnixMilli()
	valid := encode(t, series(1, now, "__name__", "up", "job", "node"))
	gigaClaim := binary.AppendUvarint(nil, 3<<30) // a snappy header claiming 3 GiB
	gigaClaim = append(gigaClaim, make([]byte, 40)...)
	cases := []struct {
		name string
		req  post
		code int
		body string // a substring of the answer
	}{
		{"bearer", post{body: valid, token: "token-a"}, 204, ""},
		{"basic auth", post{body: valid, user: "cluster-b", pass: "token-b"}, 204, ""},
		{"no credentials", post{body: valid}, 401, "credentials"},
		{"wrong token", post{body: valid, token: "token-x"}, 401, "credentials"},
		{"basic auth with another tenant's token", post{body: valid, user: "cluster-b", pass: "token-a"}, 401, ""},
		{"content type json", post{body: valid, token: "token-a", contentType: "application/json"}, 415, "Content-Type"},
		{"remote-write 2.0", post{body: valid, token: "token-a", contentType: "application/x-protobuf;proto=io.prometheus.write.v2.Request"}, 415, "proto"},
		{"explicit 1.0 proto", post{body: valid, token: "token-a", contentType: "application/x-protobuf;proto=prometheus.WriteRequest"}, 204, ""},
		{"gzip encoding", post{body: valid, token: "token-a", contentEncoding: "gzip"}, 415, "Content-Encoding"},
		{"decoded size claim over the limit", post{body: gigaClaim, token: "token-a"}, 413, "decoded size"},
		{"tenant limit on decoded size", post{body: encode(t, series(1, now, "__name__", "up", "pad", strings.Repeat("x", 5000))), token: "token-b"}, 413, "limit of 4096"},
		{"body over the limit", post{body: make([]byte, 2049), token: "token-b"}, 413, "more than the limit of 2048"},
		{"not snappy", post{body: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, token: "token-a"}, 400, "snappy"},
		{"not protobuf", post{body: snappy.Encode(nil, []byte{0x0a, 0x7f, 0x01}), token: "token-a"}, 400, ""},
		{"metadata only", post{body: snappy.Encode(nil, mustMarshal(t, &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{{MetricFamilyName: "up", Help: "h"}}})), token: "token-a"}, 204, ""},
		{"empty body", post{body: snappy.Encode(nil, nil), token: "token-a"}, 204, ""},
		{"missing metric name", post{body: encode(t, series(1, now, "job", "x")), token: "token-a"}, 400, "no metric name in series {job=\"x\"}"},
		{"invalid metric name", post{body: encode(t, series(1, now, "__name__", "1up")), token: "token-a"}, 400, `invalid metric name "1up"`},
		{"invalid label name", post{body: encode(t, series(1, now, "__name__", "up", "a-b", "x")), token: "token-a"}, 400, `invalid label name "a-b"`},
		{"empty label name", post{body: encode(t, series(1, now, "__name__", "up", "", "x")), token: "token-a"}, 400, `invalid label name ""`},
		{"duplicate label name", post{body: encode(t, series(1, now, "__name__", "up", "a", "1", "a", "2")), token: "token-a"}, 400, `duplicate label name "a"`},
		{"invalid utf-8", post{body: encode(t, series(1, now, "__name__", "up", "a", "\xff\xfe")), token: "token-a"}, 400, "UTF-8"},
		{"too many labels", post{body: encode(t, series(1, now, "__name__", "up", "a", "1", "b", "2", "c", "3")), token: "token-b"}, 400, "5 labels, more than the limit of 4"},
		{"far future", post{body: encode(t, series(1, now+11*60*1000, "__name__", "up")), token: "token-a"}, 400, "in the future"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, _ := newTestHandler(t)
			w := c.req.do(h)
			if w.Code != c.code || !strings.Contains(w.Body.String(), c.body) {
				t.Fatalf("got %d %q, want %d containing %q", w.Code, w.Body.String(), c.code, c.body)
			}
			if c.code >= 400 && strings.Count(strings.TrimSpace(w.Body.String()), "\n") != 0 {
				t.Fatalf("error answer is more than one line: %q", w.Body.String())
			}
			if c.code == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

func mustMarshal(t testing.TB, r *prompb.WriteRequest) []byte {
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGigabyteClaimCostsNothing: a tiny body whose snappy header claims a
// huge decoded size is refused before anything of that size is allocated.
func TestGigabyteClaimCostsNothing(t *testing.T) {
	h, _ := newTestHandler(t)
	body := append(binary.AppendUvarint(nil, 3<<30), make([]byte, 40)...)
	p := post{body: body, token: "token-a"}
	p.do(h) // warm the pool
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		if w := p.do(h); w.Code != 413 {
			t.Fatalf("got %d", w.Code)
		}
	}
	runtime.ReadMemStats(&after)
	if perReq := (after.TotalAlloc - before.TotalAlloc) / 100; perReq > 64<<10 {
		t.Fatalf("each refused request allocated %d bytes", perReq)
	}
}

func TestClusterLabelIsStamped(t *testing.T) {
	h, hd := newTestHandler(t)
	now := testNow.UnixMilli()
	body := encode(t,
		series(1, now, "__name__", "up", "cluster_id", "cluster-b", "job", "forged"),
		series(2, now, "job", "unsorted", "__name__", "up", "cluster_id", "cluster-a"),
		series(3, now, "__name__", "up", "job", "plain"),
	)
	if w := (post{body: body, token: "token-a"}).do(h); w.Code != 204 {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	for _, job := range []string{"forged", "unsorted", "plain"} {
		if _, _, ok := held(hd, "__name__", "up", "cluster_id", "cluster-a", "job", job); !ok {
			t.Errorf("series of job %s not held under cluster-a", job)
		}
	}
	if _, _, ok := held(hd, "__name__", "up", "cluster_id", "cluster-b", "job", "forged"); ok {
		t.Fatal("the forged cluster label was kept")
	}
	if hd.NumSeries() != 3 {
		t.Fatalf("%d series held, want 3", hd.NumSeries())
	}
	if got := testutil.ToFloat64(h.metrics.overwrites); got != 1 {
		t.Fatalf("overwrites = %v, want 1 (only the differing value counts)", got)
	}
}

func TestPartialAcceptance(t *testing.T) {
	h, hd := newTestHandler(t)
	now := testNow.UnixMilli()
	body := encode(t,
		series(1, now, "__name__", "good_one"),
		series(2, now, "__name__", "bad", "x-y", "1"),
		series(3, now, "__name__", "good_two", "empty", ""),
		series(4, now, "__name__", "1bad"),
	)
	w := (post{body: body, token: "token-a"}).do(h)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "2 of 4 series rejected; first: invalid label name \"x-y\"") {
		t.Fatalf("got %d %q", w.Code, w.Body)
	}
	if _, _, ok := held(hd, "__name__", "good_one", "cluster_id", "cluster-a"); !ok {
		t.Error("valid series before the invalid one was not kept")
	}
	if _, _, ok := held(hd, "__name__", "good_two", "cluster_id", "cluster-a"); !ok {
		t.Error("valid series after the invalid one was not kept (empty-valued label must be dropped)")
	}
	if got := testutil.ToFloat64(h.metrics.discarded.WithLabelValues(reasonInvalidLabel)); got != 1 {
		t.Errorf("discarded{invalid_label_name} = %v", got)
	}
	if got := testutil.ToFloat64(h.metrics.accepted); got != 2 {
		t.Errorf("accepted = %v, want 2", got)
	}
}

func TestSampleValuesAndTimestamps(t *testing.T) {
	h, hd := newTestHandler(t)
	now := testNow.UnixMilli()
	stale := math.Float64frombits(head.StaleNaN)
	catchUp := prompb.TimeSeries{
		Labels:  []prompb.Label{{Name: "__name__", Value: "catch_up"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: now - 3000}, {Value: 3, Timestamp: now - 1000}, {Value: 2, Timestamp: now - 2000}},
	}
	partlyFuture := prompb.TimeSeries{
		Labels:  []prompb.Label{{Name: "__name__", Value: "partly_future"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: now}, {Value: 9, Timestamp: now + 11*60*1000}},
	}
	body := encode(t, series(math.Inf(1), now, "__name__", "pos_inf"), series(math.Inf(-1), now, "__name__", "neg_inf"),
		series(math.NaN(), now, "__name__", "nan"), series(stale, now, "__name__", "stale"), catchUp, partlyFuture)
	w := (post{body: body, token: "token-a"}).do(h)
	if w.Code != 400 || !strings.Contains(w.Body.String(), "1 samples more than 10m in the future") {
		t.Fatalf("got %d %q", w.Code, w.Body)
	}
	check := func(name string, ok func(float64) bool, wantT int64) {
		t.Helper()
		v, ts, found := held(hd, "__name__", name, "cluster_id", "cluster-a")
		if !found || !ok(v) || ts != wantT {
			t.Errorf("%s: held %v at %d (found %v)", name, v, ts, found)
		}
	}
	check("pos_inf", func(v float64) bool { return math.IsInf(v, 1) }, now)
	check("neg_inf", func(v float64) bool { return math.IsInf(v, -1) }, now)
	check("nan", func(v float64) bool { return math.IsNaN(v) && !head.IsStale(v) }, now)
	check("stale", head.IsStale, now)
	check("catch_up", func(v float64) bool { return v == 3 }, now-1000)
	check("partly_future", func(v float64) bool { return v == 1 }, now)
}

// TestWriteAllocationsDoNotGrowWithSeries pins the hot-path rule: steady
// state allocates per request, never per series. It reuses one writeState
// instead of the pool, which the race detector empties at random.
func TestWriteAllocationsDoNotGrowWithSeries(t *testing.T) {
	allocs := func(n int) float64 {
		h, _ := newTestHandler(t)
		ts := make([]prompb.TimeSeries, n)
		for i := range ts {
			ts[i] = series(1, testNow.UnixMilli(), "__name__", "container_cpu_usage_seconds_total",
				"namespace", "kube-system", "pod", fmt.Sprintf("coredns-%d", i), "container", "coredns")
		}
		body := encode(t, ts...)
		in := new(input)
		st := &writeState{input: in}
		serve := func() {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
			r.Header.Set("Authorization", "Bearer token-a")
			if _, err := h.serve(httptest.NewRecorder(), r, st); err != nil {
				t.Fatal(err)
			}
			st.reset()
			st.input = in // serve gave it back to the pool: use it, not the pool's
		}
		serve()
		return testing.AllocsPerRun(20, serve)
	}
	small, large := allocs(10), allocs(2000)
	if large-small > 2 {
		t.Fatalf("allocations grew from %v (10 series) to %v (2000 series)", small, large)
	}
}

// TestHostileInputsCostLittle covers requests built to make the gateway
// work hard: a huge label set in descending order (the sort must not run on
// it), and values and names meant to blow up or split the error message.
func TestHostileInputsCostLittle(t *testing.T) {
	now := testNow.UnixMilli()
	many := prompb.TimeSeries{Samples: []prompb.Sample{{Value: 1, Timestamp: now}}}
	for i := 20000; i > 0; i-- {
		many.Labels = append(many.Labels, prompb.Label{Name: fmt.Sprintf("l%06d", i), Value: "v"})
	}
	hugeBad := series(1, now, "__name__", "up", "a", strings.Repeat("\xff", 1<<20))
	newline := series(1, now, "__name__", "up", "a\nHTTP/1.1 200 OK", strings.Repeat("x", 5000))
	cases := []struct {
		name string
		ts   prompb.TimeSeries
		want string
	}{
		{"20,000 labels in reverse order", many, "20001 labels, more than the limit of 40"},
		{"1 MiB of invalid UTF-8", hugeBad, "value of 1048576 bytes, more than the limit of 2048"},
		{"2,000 bytes of invalid UTF-8", series(1, now, "__name__", "up", "a", strings.Repeat("\xff", 2000)), "not valid UTF-8"},
		{"newline in a label name", newline, `a\nHTTP/1.1 200 OK`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, _ := newTestHandler(t)
			w := (post{body: encode(t, c.ts), token: "token-a"}).do(h)
			body := w.Body.String()
			if w.Code != 400 || !strings.Contains(body, c.want) {
				t.Fatalf("got %d %.300q, want 400 containing %q", w.Code, body, c.want)
			}
			if len(body) > 1024 || strings.Count(strings.TrimSuffix(body, "\n"), "\n") != 0 {
				t.Fatalf("error answer of %d bytes, or more than one line: %.300q", len(body), body)
			}
		})
	}
}

// TestChunkedBodyOverLimit: without a Content-Length the body is still read
// through the limit.
func TestChunkedBodyOverLimit(t *testing.T) {
	h, _ := newTestHandler(t)
	r := httptest.NewRequest(http.MethodPost, "/api/v1/write", io.MultiReader(bytes.NewReader(make([]byte, 8192)), strings.NewReader("x")))
	r.ContentLength = -1
	r.Header.Set("Authorization", "Bearer token-b") // max_request_bytes 4096
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 413 {
		t.Fatalf("got %d %q, want 413", w.Code, w.Body)
	}
}

// releasingStore stores through a head as the WAL does — Prepare, labels
// released, Commit — and runs during (once) after the release.
type releasingStore struct {
	hd     *head.Head
	during func()
}

func (s *releasingStore) Append(_ context.Context, b *head.Batch) error {
	ss, err := s.hd.Prepare(b, nil)
	b.LabelsRead()
	if f := s.during; f != nil {
		s.during = nil
		f()
	}
	s.hd.Commit(b, ss)
	return err
}

// TestInputIsReusedOnlyAfterTheLabelsAreRead pins the early release of a
// request's buffers: another request served while the first one's samples
// are being stored (and which can reuse its buffers) changes nothing of the
// first one's answer or samples.
func TestInputIsReusedOnlyAfterTheLabelsAreRead(t *testing.T) {
	s, err := NewSettings(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return testNow }
	hd := head.New(head.Options{Retention: 10 * time.Minute, Now: now}, prometheus.NewRegistry())
	store := &releasingStore{hd: hd}
	h := NewWriteHandler(s, store, WriteOptions{Now: now}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	ms := testNow.UnixMilli()
	first := encode(t,
		series(1, ms, "__name__", "first_a", "pod", "a"),
		series(2, ms, "__name__", "bad", "x-y", "1"),
		series(3, ms, "__name__", "first_b", "pod", "b"),
	)
	second := encode(t,
		series(7, ms, "__name__", "second_series_with_a_longer_name", "pod", "zzzzzzzzzzzzzzzz"),
		series(8, ms, "__name__", "second_series_with_a_longer_name", "pod", "yyyyyyyyyyyyyyyy"),
	)
	var inner *httptest.ResponseRecorder
	store.during = func() { inner = (post{body: second, token: "token-a"}).do(h) }
	outer := (post{body: first, token: "token-a"}).do(h)
	if outer.Code != 400 || !strings.Contains(outer.Body.String(), "1 of 3 series rejected; first: invalid label name \"x-y\"") {
		t.Fatalf("first request: %d %q", outer.Code, outer.Body)
	}
	if inner == nil || inner.Code != 204 {
		t.Fatalf("second request: %v", inner)
	}
	for _, c := range []struct {
		v  float64
		kv []string
	}{
		{1, []string{"__name__", "first_a", "cluster_id", "cluster-a", "pod", "a"}},
		{3, []string{"__name__", "first_b", "cluster_id", "cluster-a", "pod", "b"}},
		{7, []string{"__name__", "second_series_with_a_longer_name", "cluster_id", "cluster-a", "pod", "zzzzzzzzzzzzzzzz"}},
		{8, []string{"__name__", "second_series_with_a_longer_name", "cluster_id", "cluster-a", "pod", "yyyyyyyyyyyyyyyy"}},
	} {
		if v, _, ok := held(hd, c.kv...); !ok || v != c.v {
			t.Errorf("%v: held %v (%v), want %v", c.kv, v, ok, c.v)
		}
	}
	if hd.NumSeries() != 4 {
		t.Errorf("%d series held, want 4", hd.NumSeries())
	}
}

// blockingStore counts Append calls and holds each until unblocked,
// calling LabelsRead first if release is set (as the WAL does before its
// fsync wait).
type blockingStore struct {
	release bool
	calls   atomic.Int32
	unblock chan struct{}
}

func (s *blockingStore) Append(_ context.Context, b *head.Batch) error {
	if s.release {
		b.LabelsRead()
	}
	s.calls.Add(1)
	<-s.unblock
	return nil
}

// pushAsA posts body to h as tenant a (token-a) and returns the status.
func pushAsA(h http.Handler, body []byte) int {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer token-a")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// TestDecodingTurns pins the bound on requests decoding at once: one per
// CPU, each turn given back when the storage has read the labels, so any
// number of requests can wait for their fsync. In a synctest bubble, so
// "all blocked" is exact.
func TestDecodingTurns(t *testing.T) {
	s, err := NewSettings(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return testNow }
	body := encode(t, series(1, testNow.UnixMilli(), "__name__", "up"))
	for _, release := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			store := &blockingStore{release: release, unblock: make(chan struct{})}
			h := NewWriteHandler(s, store, WriteOptions{Now: now}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
			turns := runtime.GOMAXPROCS(0)
			n := 2*turns + 1
			codes := make(chan int, n)
			for range n {
				go func() { codes <- pushAsA(h, body) }()
			}
			synctest.Wait()
			want := int32(n) // all wait for their "fsync"
			if !release {
				want = int32(turns) // the others wait for a turn
			}
			if got := store.calls.Load(); got != want {
				t.Fatalf("release=%v: %d requests in the storage, want %d", release, got, want)
			}
			done := 0
			if !release {
				// A turn comes back when a request ends: one more gets in.
				store.unblock <- struct{}{}
				if c := <-codes; c != 204 {
					t.Fatalf("status %d", c)
				}
				done++
				synctest.Wait()
				if got := store.calls.Load(); got != want+1 {
					t.Fatalf("%d requests in the storage after one ended, want %d", got, want+1)
				}
			}
			close(store.unblock)
			for range n - done {
				if c := <-codes; c != 204 {
					t.Fatalf("status %d", c)
				}
			}
			if got := store.calls.Load(); got != int32(n) {
				t.Fatalf("release=%v: %d requests reached the storage, want %d", release, got, n)
			}
		})
	}
}

type panickingStore struct{}

func (panickingStore) Append(context.Context, *head.Batch) error { panic("storage failed") }

// TestPanicGivesTheTurnBack: a panic under a decoding turn (net/http
// recovers it) must not keep the turn, or a few would stop every push.
func TestPanicGivesTheTurnBack(t *testing.T) {
	s, err := NewSettings(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	h := NewWriteHandler(s, panickingStore{}, WriteOptions{Now: func() time.Time { return testNow }}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	body := encode(t, series(1, testNow.UnixMilli(), "__name__", "up"))
	for range runtime.GOMAXPROCS(0) + 1 {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
			r.Header.Set("Authorization", "Bearer token-a")
			h.ServeHTTP(httptest.NewRecorder(), r)
		}()
		if n := h.decoding.Held(); n != 0 {
			t.Fatalf("%d decoding turns held after a panic", n)
		}
	}
}

// TestSharedDecodingTurns: with WriteOptions.Decoding, a push waits for a
// turn held elsewhere (by a forwarded batch on the peer endpoint) and goes
// ahead once it is given back.
func TestSharedDecodingTurns(t *testing.T) {
	s, err := NewSettings(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	body := encode(t, series(1, testNow.UnixMilli(), "__name__", "up"))
	synctest.Test(t, func(t *testing.T) {
		store := &blockingStore{release: true, unblock: make(chan struct{})}
		close(store.unblock)
		shared := new(turns.Turns)
		h := NewWriteHandler(s, store, WriteOptions{Now: func() time.Time { return testNow }, Decoding: shared}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // one turn
		if err := shared.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		code := make(chan int, 1)
		go func() { code <- pushAsA(h, body) }()
		synctest.Wait()
		if got := store.calls.Load(); got != 0 {
			t.Fatalf("%d requests in the storage while the only shared turn is held elsewhere, want 0", got)
		}
		shared.Release()
		if c := <-code; c != http.StatusNoContent {
			t.Fatalf("status %d", c)
		}
		if got := store.calls.Load(); got != 1 {
			t.Fatalf("%d requests in the storage, want 1", got)
		}
		if n := shared.Held(); n != 0 {
			t.Fatalf("%d shared turns still held", n)
		}
	})
}
