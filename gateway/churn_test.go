package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/gateway/federate"
	"github.com/fedgate/fedgate/wal"
	"github.com/fedgate/fedgate/wal/head"
)

// TestSymbolTablesChurnUnderLoad: pods come and go through many symbol
// table rollovers, a few for good, while pushes go through the known-series
// path, /federate scrapes and checkpoints run at once and move the lasting
// series off sparse tables (-race checks the orderings). A reader without
// a pin on a series whose table is retired panics (without the write
// path's pin, this test failed in each of five runs; /federate's pin is
// tested by TestFederatePinsTheSeriesItWrites); every push must be
// answered 204 and every scrape 200 with only well-formed series; the
// lasting series must be held throughout, and the tables never exceed
// their bound.
func TestSymbolTablesChurnUnderLoad(t *testing.T) {
	t.Cleanup(head.SwapSymbolTables(32)) // first, so that it runs last
	var clock atomic.Int64
	clock.Store(testNow.UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()) }
	const retention = 10 * time.Minute
	reg := prometheus.NewRegistry()
	hd := head.New(head.Options{Retention: retention, Now: now}, reg)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := wal.Open(t.TempDir(), hd, wal.Options{}, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Replay(); err != nil {
		t.Fatal(err)
	}
	s, err := NewSettings(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	writes := NewWriteHandler(s, st, WriteOptions{Now: now, Head: hd}, logger, prometheus.NewRegistry())
	fed := federate.NewHandler(hd, logger, prometheus.NewRegistry())

	// Pod p of wave w has two series; its name and address are shared by
	// them (symbols). Pod 0 of each of the first lastingWaves waves lasts.
	const waves, pods, lastingWaves = 60, 12, 5
	podSeries := func(w, p int, ts int64) []prompb.TimeSeries {
		pod, addr := fmt.Sprintf("pod-%d-%d", w, p), fmt.Sprintf("10.0.%d.%d:80", w, p)
		return []prompb.TimeSeries{
			series(1, ts, "__name__", "up", "instance", addr, "pod", pod),
			series(2, ts, "__name__", "cpu", "instance", addr, "pod", pod),
		}
	}

	var wg sync.WaitGroup
	done := make(chan struct{})
	var failure atomic.Pointer[string]
	fail := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		failure.CompareAndSwap(nil, &msg)
	}
	wg.Go(func() { // scrapes
		for {
			select {
			case <-done:
				return
			default:
			}
			r := httptest.NewRequest(http.MethodGet, `/federate?match[]={__name__=~".+"}`, nil)
			w := httptest.NewRecorder()
			fed.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				fail("/federate answered %d: %s", w.Code, w.Body)
				return
			}
			for line := range strings.Lines(w.Body.String()) {
				if !strings.HasPrefix(line, "#") && !strings.Contains(line, `pod="pod-`) {
					fail("/federate wrote %q", line)
					return
				}
			}
		}
	})
	wg.Go(func() { // checkpoints: removals, moves, retirements
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := st.Checkpoint(); err != nil {
				fail("checkpoint: %v", err)
				return
			}
		}
	})

	srv := httptest.NewServer(writes)
	defer srv.Close()
	push := func(ts []prompb.TimeSeries) {
		r, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", strings.NewReader(string(encode(t, ts...))))
		r.Header.Set("Authorization", "Bearer token-a")
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("push answered %d: %s", resp.StatusCode, body)
		}
	}
	for w := range waves {
		// Time passes a fifth of a retention a wave: a wave's pods expire
		// five waves on; the lasting ones are pushed on.
		ts := clock.Add(int64(retention / 5 / time.Millisecond))
		var batch []prompb.TimeSeries
		for lw := range min(w, lastingWaves) {
			batch = append(batch, podSeries(lw, 0, ts)...)
		}
		for p := range pods {
			batch = append(batch, podSeries(w, p, ts)...)
		}
		push(batch)
		push(batch) // the same again: the known-series path
		if msg := failure.Load(); msg != nil {
			break
		}
	}
	close(done)
	wg.Wait()
	if msg := failure.Load(); msg != nil {
		t.Fatal(*msg)
	}
	if err := st.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, s := range hd.AppendAllSeries(nil) {
		held[s.Labels().Get("pod")] = true
	}
	for w := range lastingWaves {
		if !held[fmt.Sprintf("pod-%d-0", w)] {
			t.Errorf("lasting pod %d is not held", w)
		}
	}
	if tables, _, _ := head.SymbolStats(); tables > 4 {
		t.Fatalf("%d symbol tables", tables)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "fedgate_head_series_moved_total" && mf.GetMetric()[0].GetCounter().GetValue() == 0 {
			t.Error("no series was moved off a sparse table")
		}
	}
}
