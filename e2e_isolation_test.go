package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// TestTenantIsolation runs a real fedgate with two tenants. "flood" sends
// as fast as it can, far over its ingestion rate, and invents new series in
// every request (a cardinality bomb against its max_series); "steady"
// pushes like a Prometheus would. Every one of steady's pushes must be
// answered 204; its latency beside the flood is logged against its solo
// baseline (no timing assertion: this machine's two cores are noisy).
func TestTenantIsolation(t *testing.T) {
	skipIfShort(t)
	public, internal := freeAddr(t), freeAddr(t)
	cfg := `tenants:
  - {id: steady, token: steady-token}
  - {id: flood, token: flood-token, limits: {ingestion_rate: 5000, ingestion_burst: 20000, max_series: 2000}}
storage: {retention: 10m}
`
	dir := t.TempDir()
	p := startProcess(t, "fedgate", fedgateBin,
		"--config.file="+writeFile(t, dir, "fedgate.yml", cfg),
		"--storage.path="+dir,
		"--web.listen-address="+public,
		"--web.internal-listen-address="+internal)
	waitHTTP200(t, "http://"+public+"/-/ready", 30*time.Second, p)
	url := "http://" + public + "/api/v1/write"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}

	send := func(token string, body []byte) (int, error) {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	body := func(prefix string, series int, ts int64) []byte {
		wr := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, series)}
		for i := range wr.Timeseries {
			wr.Timeseries[i] = prompb.TimeSeries{
				Labels: []prompb.Label{
					{Name: "__name__", Value: "node_cpu_seconds_total"},
					{Name: "cpu", Value: fmt.Sprint(i % 64)},
					{Name: "instance", Value: fmt.Sprintf("%s-%d:9100", prefix, i/64)},
					{Name: "job", Value: "node"},
					{Name: "mode", Value: "user"},
				},
				Samples: []prompb.Sample{{Value: float64(ts), Timestamp: ts}},
			}
		}
		b, err := wr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return snappy.Encode(nil, b)
	}

	// steady pushes 150 requests of 500 series, as a Prometheus would
	// (one at a time), and returns its latencies.
	steady := func(round int) []time.Duration {
		var lat []time.Duration
		for i := range 150 {
			b := body("steady", 500, time.Now().UnixMilli()+int64(round*1000+i))
			start := time.Now()
			code, err := send("steady-token", b)
			lat = append(lat, time.Since(start))
			if err != nil || code != http.StatusNoContent {
				t.Fatalf("steady push %d beside the flood answered %d (%v)", i, code, err)
			}
		}
		slices.Sort(lat)
		return lat
	}
	solo := steady(0)

	// The flood: 8 senders, over the rate, every request with new series.
	// Bodies are encoded up front, so that the test's own CPU goes to
	// sending, not to building requests.
	bombs := make([][]byte, 64)
	for i := range bombs {
		bombs[i] = body(fmt.Sprintf("bomb-%d", i), 2000, time.Now().UnixMilli())
	}
	cpu0, err := scrapeValue("http://"+internal+"/metrics", "process_cpu_seconds_total")
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var flooded, limited atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; !stop.Load(); i++ {
				code, err := send("flood-token", bombs[i%len(bombs)])
				if err != nil {
					continue
				}
				flooded.Add(1)
				if code == http.StatusTooManyRequests {
					limited.Add(1)
				}
			}
		})
	}
	eventually(t, 30*time.Second, "the flood to be limited", func() error {
		if limited.Load() < 20 {
			return fmt.Errorf("%d of %d flood requests limited so far", limited.Load(), flooded.Load())
		}
		return nil
	}, p)
	if prof := os.Getenv("FEDGATE_PROFILE_FLOOD"); prof != "" {
		_, b, err := get("http://" + internal + "/debug/pprof/profile?seconds=3")
		if err == nil {
			err = os.WriteFile(prof, b, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	beside := steady(1)
	stop.Store(true)
	wg.Wait()
	cpu1, err := scrapeValue("http://"+internal+"/metrics", "process_cpu_seconds_total")
	if err != nil {
		t.Fatal(err)
	}
	// What fedgate spent, steady's 150 requests included (see solo p50).
	t.Logf("fedgate CPU during the flood: %.2fs for %d flood requests and 150 steady ones: %.0fµs per flood request at most",
		cpu1-cpu0, flooded.Load(), (cpu1-cpu0)/float64(flooded.Load())*1e6)

	q := func(l []time.Duration, f float64) time.Duration { return l[int(float64(len(l)-1)*f)] }
	t.Logf("steady tenant latency, solo: p50 %v p99 %v; beside the flood: p50 %v p99 %v (p50 ratio %.2f); flood: %d requests, %d answered 429",
		q(solo, 0.5), q(solo, 0.99), q(beside, 0.5), q(beside, 0.99),
		float64(q(beside, 0.5))/float64(q(solo, 0.5)), flooded.Load(), limited.Load())

	// The bomb is held to its limit; steady's series all arrived.
	for _, c := range []struct {
		query string
		want  float64
	}{
		{`fedgate_discarded_samples_total{reason="series_limit"}`, 1},
		{`fedgate_discarded_samples_total{reason="rate_limited"}`, 1},
	} {
		v, err := scrapeValue("http://"+internal+"/metrics", c.query)
		if err != nil || v < c.want {
			t.Errorf("%s = %v (%v), want at least %v", c.query, v, err, c.want)
		}
	}
	v, err := scrapeValue("http://"+internal+"/metrics", "fedgate_head_series")
	if err != nil || v > 2000+500 {
		t.Errorf("fedgate_head_series = %v (%v): the flood passed its max_series of 2000 (steady holds 500)", v, err)
	}
}
