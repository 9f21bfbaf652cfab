package main

import (
	"os"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// Every series gets exactly one sample per round, and its timestamps
// strictly increase from round to round; the tenant label keeps tenants'
// series apart.
func TestEncodeTimestampsIncreasePerSeries(t *testing.T) {
	c := Config{Tenants: 3, SeriesPerTenant: 25, SeriesPerRequest: 10, TenantLabel: "cluster_id"}
	const rounds = 4
	reqs, _, err := encode(c, rounds, 1_000, 15_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 3*3 {
		t.Fatalf("%d requests, want 9", len(reqs))
	}
	last := map[string]int64{}
	for round := range rounds {
		seen := 0
		for _, r := range reqs {
			raw, err := snappy.Decode(nil, r.bodies[round])
			if err != nil {
				t.Fatal(err)
			}
			var wr prompb.WriteRequest
			if err := wr.Unmarshal(raw); err != nil {
				t.Fatal(err)
			}
			if len(wr.Timeseries) != r.samples {
				t.Fatalf("request has %d series, counted %d", len(wr.Timeseries), r.samples)
			}
			for _, ts := range wr.Timeseries {
				key := labelsKey(ts.Labels)
				if len(ts.Samples) != 1 {
					t.Fatalf("%s: %d samples", key, len(ts.Samples))
				}
				if prev, ok := last[key]; ok && ts.Samples[0].Timestamp <= prev {
					t.Fatalf("%s: timestamp %d after %d", key, ts.Samples[0].Timestamp, prev)
				}
				last[key] = ts.Samples[0].Timestamp
				seen++
			}
		}
		if seen != 75 || len(last) != 75 {
			t.Fatalf("round %d: %d samples, %d distinct series; want 75 each", round, seen, len(last))
		}
	}
}

func labelsKey(ls []prompb.Label) string {
	var s string
	for _, l := range ls {
		s += l.Name + "=" + l.Value + ","
	}
	return s
}

func TestProcReadsOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := cpuSeconds(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	rss, err := peakRSSBytes(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("peak RSS %d, %v", rss, err)
	}
}

func TestConfigValidate(t *testing.T) {
	c, err := parseFlags(nil)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if c.Rate != 0 || c.HalfRounds != 0 {
		t.Fatalf("defaults pace: -rate %g -half-rounds %d", c.Rate, c.HalfRounds)
	}
	if _, err := parseFlags([]string{"-rate=250000", "-half-rounds=5"}); err != nil {
		t.Fatalf("-rate=250000 -half-rounds=5: %v", err)
	}
	for _, args := range [][]string{{"-auth=digest"}, {"-rate=-1"}, {"-rate=NaN"}, {"-rate=+Inf"}, {"-half-rounds=-1"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%s accepted", args[0])
		}
	}
}
