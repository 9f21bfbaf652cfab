package main

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Together the shards send every request of every round exactly once.
// Within a shard each request's rounds come in order (its series'
// timestamps increase) and due times only increase (a sender never has to
// go back in time). The due times are a fixed grid starting at the phase's
// start, and a phase's samples over its gaps is the target rate.
func TestScheduleShards(t *testing.T) {
	sizes := []int{2000, 2000, 400, 2000, 2000, 400, 7} // uneven, like a tenant's last request
	reqs := make([]*request, len(sizes))
	var perRound int64
	for i, n := range sizes {
		reqs[i] = &request{samples: n}
		perRound += int64(n)
	}
	const from, to, rate = 2, 6, 123_456.0
	sched := newSchedule(reqs, rate)
	for _, c := range []int{1, 3, len(reqs), 16} {
		seen := map[[2]int]int{}
		var dues []time.Duration
		for w := range c {
			lastRound := map[int]int{}
			prevDue := time.Duration(-1)
			for round, i := range shard(w, c, len(reqs), from, to) {
				seen[[2]int{round, i}]++
				if r, ok := lastRound[i]; ok && round <= r {
					t.Fatalf("c=%d sender %d: request %d round %d after round %d", c, w, i, round, r)
				}
				lastRound[i] = round
				due := sched.due(round-from, i)
				if due <= prevDue {
					t.Fatalf("c=%d sender %d: due %s after %s", c, w, due, prevDue)
				}
				prevDue = due
				dues = append(dues, due)
			}
		}
		if want := (to - from) * len(reqs); len(seen) != want || len(dues) != want {
			t.Fatalf("c=%d: %d distinct pushes of %d, want %d each", c, len(seen), len(dues), want)
		}
		slices.Sort(dues)
		if dues[0] != 0 {
			t.Fatalf("c=%d: first due %s, want 0", c, dues[0])
		}
		for k := 1; k < len(dues); k++ {
			if d := dues[k] - dues[k-1]; math.Abs(float64(d)-sched.gap) > 1 {
				t.Fatalf("c=%d: due %d is %s after the one before, want %.0f ns", c, k, d, sched.gap)
			}
		}
	}
	// A phase's samples take its requests' gaps at the target rate.
	phase := float64((to-from)*len(reqs)) * sched.gap / float64(time.Second)
	if got := float64((to-from)*perRound) / phase; math.Abs(got-rate) > 1e-6*rate {
		t.Fatalf("schedule runs at %f samples/s, want %f", got, rate)
	}
	if newSchedule(reqs, 0) != nil {
		t.Fatal("rate 0 is paced")
	}
}

// A paced phase sends each of its rounds once, nothing of other rounds, and
// each request's rounds in order. The rate is high enough that no send
// waits for long; nothing here depends on timing.
func TestSendRoundsPaced(t *testing.T) {
	c := Config{URL: "x", Tenants: 2, SeriesPerTenant: 25, SeriesPerRequest: 10, Concurrency: 3,
		Auth: "none", TenantLabel: "cluster_id", Timeout: time.Minute} // the label makes every body distinct
	const rounds, from, to = 5, 2, 5
	reqs, _, err := encode(c, rounds, 1_000, 15_000)
	if err != nil {
		t.Fatal(err)
	}
	type push struct{ req, round int }
	which := map[string]push{}
	for i, r := range reqs {
		for round, b := range r.bodies {
			which[string(b)] = push{i, round}
		}
	}
	if len(which) != rounds*len(reqs) {
		t.Fatalf("%d distinct bodies, want %d", len(which), rounds*len(reqs))
	}
	var (
		mu  sync.Mutex
		got []push
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, which[string(b)])
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c.URL = srv.URL

	s := newSender(c)
	st := s.sendRounds(context.Background(), reqs, c.Concurrency, from, to, newSchedule(reqs, 1e12))
	if want := int64((to - from) * len(reqs)); st.requests != want || st.errors() != 0 || len(st.latencies) != int(want) {
		t.Fatalf("%d requests, %d errors, %d latencies; want %d, 0, %d (first error %q)", st.requests, st.errors(), len(st.latencies), want, want, st.firstErr)
	}
	if want := int64((to - from) * c.Tenants * c.SeriesPerTenant); st.accepted != want {
		t.Fatalf("%d samples accepted, want %d", st.accepted, want)
	}
	last := map[int]int{}
	for _, p := range got {
		if p.round < from || p.round >= to {
			t.Fatalf("request %d sent round %d, outside [%d, %d)", p.req, p.round, from, to)
		}
		if r, ok := last[p.req]; ok && p.round != r+1 {
			t.Fatalf("request %d: round %d after round %d", p.req, p.round, r)
		}
		last[p.req] = p.round
	}
	if len(last) != len(reqs) {
		t.Fatalf("%d requests seen, want %d", len(last), len(reqs))
	}
}

// TestLogSlow: -log-slow prints each request slower than it, with its due
// time and answer, and nothing for faster ones.
func TestLogSlow(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		logSlow time.Duration
		lines   int
	}{{time.Nanosecond, 1}, {time.Hour, 0}} {
		c := Config{URL: srv.URL, Tenants: 1, Concurrency: 1, Auth: "none", Timeout: time.Minute, LogSlow: tc.logSlow}
		s := newSender(c)
		var out strings.Builder
		s.slowOut = &out
		st := &stats{codes: map[string]int64{}}
		s.push(context.Background(), &request{samples: 1, bodies: [][]byte{{0}}}, 0, time.Now(), st)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if out.Len() == 0 {
			lines = nil
		}
		if len(lines) != tc.lines || st.codes["204"] != 1 {
			t.Fatalf("-log-slow %s: printed %q for one 204; want %d lines", tc.logSlow, out.String(), tc.lines)
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, "slow due=") || !strings.HasSuffix(l, " code=204") {
				t.Fatalf("-log-slow line %q: want slow due=HH:MM:SS.mmm took=D code=204", l)
			}
		}
	}
	if _, err := parseFlags([]string{"-log-slow=-1s"}); err == nil {
		t.Fatal("-log-slow=-1s accepted")
	}
}
