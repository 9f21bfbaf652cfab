package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/wal/head"
)

// limitsEnv is a write handler behind a real HTTP server, with a clock the
// test moves.
type limitsEnv struct {
	t      *testing.T
	h      *WriteHandler
	hd     *head.Head
	srv    *httptest.Server
	mu     sync.Mutex
	now    time.Time
	logBuf *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLimitsEnv(t *testing.T, yml string, opts WriteOptions, st Storage) *limitsEnv {
	t.Helper()
	f, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSettings(f)
	if err != nil {
		t.Fatal(err)
	}
	e := &limitsEnv{t: t, now: testNow, logBuf: &syncBuffer{}}
	opts.Now = e.clock
	e.hd = head.New(head.Options{Retention: 10 * time.Minute, Now: e.clock}, prometheus.NewRegistry())
	if st == nil {
		st = e.hd
	}
	e.h = NewWriteHandler(s, st, opts, slog.New(slog.NewTextHandler(e.logBuf, nil)), prometheus.NewRegistry())
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *limitsEnv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *limitsEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// push sends n series of one sample each (series first..first+n-1) and
// returns the answer.
func (e *limitsEnv) push(token string, first, n int) (*http.Response, string) {
	e.t.Helper()
	ts := make([]prompb.TimeSeries, n)
	for i := range ts {
		ts[i] = series(1, e.clock().UnixMilli(), "__name__", "m", "i", fmt.Sprint(first+i))
	}
	return e.post(token, encode(e.t, ts...))
}

func (e *limitsEnv) post(token string, body []byte) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const rateConfig = `
tenants:
  - {id: a, token: ta, limits: {ingestion_rate: 100, ingestion_burst: 1000}}
  - {id: b, token: tb}
`

func TestIngestionRate(t *testing.T) {
	e := newLimitsEnv(t, rateConfig, WriteOptions{}, nil)
	if resp, body := e.push("ta", 0, 800); resp.StatusCode != 204 {
		t.Fatalf("first push: %d %s", resp.StatusCode, body)
	}
	// 200 tokens left, and the last request had 800: refused before its
	// body is read, with when to retry.
	resp, body := e.push("ta", 1000, 800)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "6" || !strings.Contains(body, "ingestion rate limit") {
		t.Fatalf("over the rate: %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if testutil.ToFloat64(e.h.metrics.received) != 800 {
		t.Fatal("a request the bucket could not cover was decoded")
	}
	// Another tenant is not affected.
	if resp, body := e.push("tb", 0, 2000); resp.StatusCode != 204 {
		t.Fatalf("other tenant: %d %s", resp.StatusCode, body)
	}
	// Six seconds later the bucket holds 800 again.
	e.advance(6 * time.Second)
	if resp, body := e.push("ta", 1000, 100); resp.StatusCode != 204 {
		t.Fatalf("after waiting: %d %s", resp.StatusCode, body)
	}
	// 700 left; a request of 800 passes the pre-check (the last had 100),
	// is decoded, and is refused whole: nothing of it stored.
	resp, body = e.push("ta", 2000, 800)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "800 samples") {
		t.Fatalf("larger than the bucket: %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if e.hd.TenantSeries("a") != 900 {
		t.Fatalf("a refused request stored something: %d series, want 900", e.hd.TenantSeries("a"))
	}
	if got := testutil.ToFloat64(e.h.metrics.discarded.WithLabelValues(reasonRateLimited)); got != 800 {
		t.Errorf("discarded{rate_limited} = %v, want 800", got)
	}
}

func TestEmptyBucketIsAnsweredBeforeDecoding(t *testing.T) {
	e := newLimitsEnv(t, rateConfig, WriteOptions{}, nil)
	if resp, _ := e.push("ta", 0, 1000); resp.StatusCode != 204 {
		t.Fatal("could not drain the bucket")
	}
	// Garbage would be a 400 if it were read; an empty bucket answers first.
	resp, body := e.post("ta", []byte("not snappy at all"))
	if resp.StatusCode != 429 || !strings.Contains(body, "cannot cover a request like its last one") || resp.Header.Get("Retry-After") != "10" {
		t.Fatalf("got %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if testutil.ToFloat64(e.h.metrics.received) != 1000 {
		t.Fatal("the refused request was decoded")
	}
	// A bucket holding less than the last request is refused before
	// decoding too: not just an empty one.
	e.advance(5 * time.Second) // 500 tokens; the last request had 1000
	if resp, body := e.post("ta", []byte("still not snappy")); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("half-full bucket: %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if testutil.ToFloat64(e.h.metrics.received) != 1000 {
		t.Fatal("a request the bucket could not cover was decoded")
	}
}

func TestRequestLargerThanBurst(t *testing.T) {
	e := newLimitsEnv(t, rateConfig, WriteOptions{}, nil)
	// 1500 > burst: admitted from a full bucket, paid back before the next.
	if resp, body := e.push("ta", 0, 1500); resp.StatusCode != 204 {
		t.Fatalf("a request over the burst from a full bucket: %d %s", resp.StatusCode, body)
	}
	// 500 in debt, and the next request is expected to be as large (capped
	// at the burst): (1000 + 500) / 100 = 15 s.
	resp, _ := e.push("ta", 2000, 1)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "15" {
		t.Fatalf("in debt: %d Retry-After=%q, want 429 and 15", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestSeriesLimitOverHTTP(t *testing.T) {
	e := newLimitsEnv(t, "tenants: [{id: a, token: ta, limits: {max_series: 10}}]", WriteOptions{}, nil)
	resp, body := e.push("ta", 0, 15)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "60" || !strings.Contains(body, "5 new series") {
		t.Fatalf("got %d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if e.hd.TenantSeries("a") != 10 {
		t.Fatalf("%d series held, want the 10 that fit", e.hd.TenantSeries("a"))
	}
	e.advance(time.Second)
	if resp, body := e.push("ta", 0, 10); resp.StatusCode != 204 {
		t.Fatalf("held series must keep updating: %d %s", resp.StatusCode, body)
	}
	if got := testutil.ToFloat64(e.h.metrics.discarded.WithLabelValues(reasonSeriesLimit)); got != 5 {
		t.Errorf("discarded{series_limit} = %v, want 5", got)
	}
	if got := testutil.ToFloat64(e.h.metrics.accepted); got != 20 {
		t.Errorf("accepted = %v, want 20", got)
	}
	if st := e.h.TenantStats(); len(st) != 1 || st[0].SeriesLimitedSamples != 5 || st[0].LastLimited.IsZero() {
		t.Errorf("tenant stats = %+v", st)
	}
}

// failingStorage fails the first fail Appends, then stores in the head.
type failingStorage struct {
	hd   *head.Head
	fail int
	err  error // nil: disk on fire
}

func (f *failingStorage) Append(ctx context.Context, b *head.Batch) error {
	if f.fail > 0 {
		f.fail--
		if f.err != nil {
			return f.err
		}
		return errors.New("disk on fire")
	}
	return f.hd.Append(ctx, b)
}

// TestRateIsGivenBackForWhatWasNotStored: samples charged to the bucket
// but not stored, because the store failed or the series limit refused
// them, are given back: a sender retrying through an outage on this side
// does not find its bucket drained by them.
func TestRateIsGivenBackForWhatWasNotStored(t *testing.T) {
	fs := &failingStorage{fail: 1}
	e := newLimitsEnv(t, rateConfig, WriteOptions{}, fs)
	fs.hd = e.hd
	// The sender is told to retry; the cause is for the log only.
	if resp, body := e.push("ta", 0, 1000); resp.StatusCode != 503 || strings.Contains(body, "disk on fire") || !strings.Contains(body, "retry later") {
		t.Fatalf("failing store: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(e.logBuf.String(), "store: disk on fire") {
		t.Fatalf("the log does not say why the store failed: %s", e.logBuf)
	}
	// The whole burst was charged and given back: the retry fits.
	if resp, body := e.push("ta", 0, 1000); resp.StatusCode != 204 {
		t.Fatalf("retry after the store recovered: %d %s", resp.StatusCode, body)
	}

	e = newLimitsEnv(t, "tenants: [{id: a, token: ta, limits: {max_series: 10, ingestion_rate: 1, ingestion_burst: 100}}]", WriteOptions{}, nil)
	if resp, _ := e.push("ta", 0, 25); resp.StatusCode != 429 {
		t.Fatalf("over the series limit: %d", resp.StatusCode)
	}
	// 25 charged, 15 of them refused by the limit and given back.
	b := &e.h.tenants.get("a").bucket
	b.mu.Lock()
	tokens := b.tokens
	b.mu.Unlock()
	if tokens != 90 {
		t.Fatalf("the bucket holds %v tokens after 10 samples stored, want 90", tokens)
	}
}

// TestNotReadyIsSaid: a store failing with the storage's "not ready" is
// answered with it, any other failure without its cause.
func TestNotReadyIsSaid(t *testing.T) {
	notReady := errors.New("write-ahead log not ready")
	fs := &failingStorage{fail: 1, err: fmt.Errorf("%w", notReady)}
	e := newLimitsEnv(t, rateConfig, WriteOptions{NotReady: notReady}, fs)
	fs.hd = e.hd
	if resp, body := e.push("ta", 0, 10); resp.StatusCode != 503 || !strings.Contains(body, "write-ahead log not ready; retry later") {
		t.Fatalf("not ready: %d %s", resp.StatusCode, body)
	}
}

// blockingStorage holds every Append until released, as a store waiting
// for a sync or an owner does.
type blockingStorage struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStorage) Append(ctx context.Context, batch *head.Batch) error {
	batch.LabelsRead() // as a store does before it waits: the decoding turn goes back
	b.entered <- struct{}{}
	<-b.release
	return nil
}

func TestConcurrencyBound(t *testing.T) {
	st := &blockingStorage{entered: make(chan struct{}, 1), release: make(chan struct{})}
	e := newLimitsEnv(t, "tenants: [{id: a, token: ta}, {id: b, token: tb}]", WriteOptions{MaxConcurrent: 1, QueueTimeout: 50 * time.Millisecond}, st)
	done := make(chan int)
	go func() {
		resp, _ := e.push("ta", 0, 1)
		done <- resp.StatusCode
	}()
	<-st.entered // the only slot is taken
	resp, body := e.push("tb", 0, 1)
	if resp.StatusCode != 503 || !strings.Contains(body, "too many concurrent write requests") {
		t.Fatalf("second request: %d %s", resp.StatusCode, body)
	}
	close(st.release)
	if code := <-done; code != 204 {
		t.Fatalf("first request: %d", code)
	}
	go func() { <-st.entered }()
	if resp, body := e.push("tb", 0, 1); resp.StatusCode != 204 {
		t.Fatalf("after the slot freed: %d %s", resp.StatusCode, body)
	}
}

// TestOneTenantHoldsAtMostThreeQuartersOfTheSlots: a tenant whose requests all wait
// in the store (a slow owner, a sender catching up) holds three of the
// four slots; its next request waits, then gets 503, while another
// tenant's is served.
func TestOneTenantHoldsAtMostThreeQuartersOfTheSlots(t *testing.T) {
	st := &blockingStorage{entered: make(chan struct{}, 4), release: make(chan struct{})}
	e := newLimitsEnv(t, "tenants: [{id: a, token: ta}, {id: b, token: tb}]", WriteOptions{MaxConcurrent: 4, QueueTimeout: 50 * time.Millisecond}, st)
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(st.release) }) }) // before the server closes
	done := make(chan int, 4)
	for i := range 3 {
		go func() {
			resp, _ := e.push("ta", i, 1)
			done <- resp.StatusCode
		}()
	}
	for range 3 {
		<-st.entered // tenant a takes its three slots
	}
	third := make(chan string, 1)
	go func() {
		resp, body := e.push("ta", 3, 1)
		third <- fmt.Sprint(resp.StatusCode, " ", body)
	}()
	select {
	case <-st.entered:
		done <- 0 // it is answered once released
		t.Fatal("tenant a's fourth request reached the store: one tenant holds every slot")
	case got := <-third:
		if !strings.HasPrefix(got, "503 ") || !strings.Contains(got, "the tenant has 3 in progress") {
			t.Fatalf("tenant a's fourth request: %s", got)
		}
	}
	go func() {
		resp, _ := e.push("tb", 0, 1)
		done <- resp.StatusCode
	}()
	<-st.entered // tenant b's request reaches the store
	release.Do(func() { close(st.release) })
	for range 4 {
		if code := <-done; code != 204 {
			t.Fatalf("a request holding a slot: %d", code)
		}
	}
	// The slots were given back: tenant a has its three again.
	go func() {
		for range 3 {
			<-st.entered
		}
	}()
	for i := range 3 {
		if resp, body := e.push("ta", 10+i, 1); resp.StatusCode != 204 {
			t.Fatalf("after the slots freed: %d %s", resp.StatusCode, body)
		}
	}
}

func TestRefusalsAreLoggedOncePerMinute(t *testing.T) {
	e := newLimitsEnv(t, rateConfig, WriteOptions{}, nil)
	e.push("ta", 0, 1000)
	for range 50 {
		e.push("ta", 0, 10)
	}
	if n := strings.Count(e.logBuf.String(), "reason=rate_limited"); n != 1 {
		t.Fatalf("%d log lines for 50 refusals in one minute, want 1:\n%s", n, e.logBuf)
	}
	e.advance(61 * time.Second)
	e.push("ta", 0, 7000) // over the whole bucket again
	e.push("ta", 0, 10)
	if n := strings.Count(e.logBuf.String(), "reason=rate_limited"); n != 2 {
		t.Fatalf("%d log lines after a minute, want 2", n)
	}
}

// TestBombsCostLittle: a decompression bomb and oversized bodies are
// refused without allocating anything near their size. The bound is
// checked without -race only.
func TestBombsCostLittle(t *testing.T) {
	e := newLimitsEnv(t, "tenants: [{id: a, token: ta, limits: {max_request_bytes: 4194304}}]", WriteOptions{}, nil)
	bomb := snappy.Encode(nil, make([]byte, 64<<20)) // 64 MiB of zeros in ~3 MB
	huge := make([]byte, 64<<20)
	cases := []struct {
		name    string
		send    func() *http.Response
		code    int
		maxHeap uint64
	}{
		{"decompression bomb", func() *http.Response { r, _ := e.post("ta", bomb); return r }, 413, 16 << 20},
		{"64 MiB body with Content-Length", func() *http.Response { r, _ := e.post("ta", huge); return r }, 413, 8 << 20},
		{"64 MiB chunked body", func() *http.Response {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL, io.MultiReader(bytes.NewReader(huge)))
			req.ContentLength = -1
			req.Header.Set("Authorization", "Bearer ta")
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}, 413, 48 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			resp := c.send()
			runtime.ReadMemStats(&after)
			if resp.StatusCode != c.code {
				t.Fatalf("got %d, want %d", resp.StatusCode, c.code)
			}
			if raceEnabled {
				return
			}
			// Generous: the client side of the test allocates too.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > c.maxHeap {
				t.Fatalf("allocated %d MiB, bound %d MiB", alloc>>20, c.maxHeap>>20)
			}
		})
	}
}
