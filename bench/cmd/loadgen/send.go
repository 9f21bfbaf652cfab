package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// sender pushes requests over one shared keep-alive pool.
type sender struct {
	client  *http.Client
	url     string
	headers []http.Header // per tenant

	logSlow time.Duration // see Config.LogSlow
	slowMu  sync.Mutex
	slowOut io.Writer
}

func newSender(c Config) *sender {
	tr := &http.Transport{
		MaxIdleConns:        c.Concurrency,
		MaxIdleConnsPerHost: c.Concurrency,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	s := &sender{client: &http.Client{Transport: tr, Timeout: c.Timeout}, url: c.URL, logSlow: c.LogSlow, slowOut: os.Stderr}
	for t := range c.Tenants {
		h := http.Header{
			"Content-Type":                      {"application/x-protobuf"},
			"Content-Encoding":                  {"snappy"},
			"X-Prometheus-Remote-Write-Version": {"0.1.0"},
			"User-Agent":                        {"fedgate-loadgen"},
		}
		switch c.Auth {
		case "bearer":
			h.Set("Authorization", "Bearer "+tenantToken(t))
		case "basic":
			h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(tenantID(t)+":"+tenantToken(t))))
		}
		s.headers = append(s.headers, h)
	}
	return s
}

// stats is what one phase of sending saw.
type stats struct {
	elapsed   time.Duration
	accepted  int64 // samples in requests answered 2xx
	requests  int64
	codes     map[string]int64 // "204", "429", "error" (transport)
	latencies []time.Duration  // paced: from each request's due time
	maxLag    time.Duration    // paced: the latest send after its due time
	firstErr  string
}

func (s *stats) merge(o *stats) {
	s.accepted += o.accepted
	s.requests += o.requests
	s.latencies = append(s.latencies, o.latencies...)
	s.maxLag = max(s.maxLag, o.maxLag)
	for k, v := range o.codes {
		s.codes[k] += v
	}
	if s.firstErr == "" {
		s.firstErr = o.firstErr
	}
}

func (s *stats) errors() int64 {
	var n int64
	for code, v := range s.codes {
		if !strings.HasPrefix(code, "2") {
			n += v
		}
	}
	return n
}

// percentile returns the q-quantile (0..1) of the latencies.
func (s *stats) percentile(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	sort.Slice(s.latencies, func(i, j int) bool { return s.latencies[i] < s.latencies[j] })
	i := int(q*float64(len(s.latencies))+0.5) - 1
	return s.latencies[min(max(i, 0), len(s.latencies)-1)]
}

// sendRounds sends rounds [from, to) of every request, each sender its
// shard. With sched nil it sends as fast as answers come back (closed
// loop); otherwise each request waits for its due time and its latency
// counts from then.
func (s *sender) sendRounds(ctx context.Context, reqs []*request, concurrency, from, to int, sched *schedule) *stats {
	all := &stats{codes: map[string]int64{}}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats{codes: map[string]int64{}}
			for round, i := range shard(w, concurrency, len(reqs), from, to) {
				t0 := time.Now()
				if sched != nil {
					t0 = start.Add(sched.due(round-from, i))
					if !waitUntil(ctx, t0) {
						break
					}
					st.maxLag = max(st.maxLag, time.Since(t0))
				}
				if ctx.Err() != nil {
					break
				}
				s.push(ctx, reqs[i], round, t0, st)
			}
			mu.Lock()
			all.merge(st)
			mu.Unlock()
		}()
	}
	wg.Wait()
	all.elapsed = time.Since(start)
	return all
}

// push sends one round of r and records its answer; the latency counts
// from t0.
func (s *sender) push(ctx context.Context, r *request, round int, t0 time.Time, st *stats) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(r.bodies[round]))
	if err != nil {
		panic(err) // the URL was parsed once already; cannot fail here
	}
	req.Header = s.headers[r.tenant]
	resp, err := s.client.Do(req)
	st.requests++
	if err != nil {
		st.latencies = append(st.latencies, time.Since(t0))
		st.codes["error"]++
		if st.firstErr == "" {
			st.firstErr = err.Error()
		}
		return
	}
	var msg []byte
	if resp.StatusCode/100 != 2 && st.firstErr == "" {
		msg, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	st.latencies = append(st.latencies, d)
	if s.logSlow > 0 && d > s.logSlow {
		s.slowMu.Lock()
		fmt.Fprintf(s.slowOut, "slow due=%s took=%s code=%d\n", t0.UTC().Format("15:04:05.000"), d.Round(time.Millisecond), resp.StatusCode)
		s.slowMu.Unlock()
	}
	st.codes[fmt.Sprint(resp.StatusCode)]++
	if resp.StatusCode/100 == 2 {
		st.accepted += int64(r.samples)
	} else if st.firstErr == "" {
		st.firstErr = fmt.Sprintf("%d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	}
}
