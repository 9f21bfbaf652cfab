package fuzz

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"

	"github.com/fedgate/fedgate/gateway"
	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
	"github.com/fedgate/fedgate/wal/head"
)

const (
	// maxHandlerInput caps FuzzWriteHandler and FuzzFederate inputs.
	maxHandlerInput = 1 << 20
	fuzzTenant      = "cluster-a"
	fuzzToken       = "token-a"
	fuzzCluster     = config.DefaultClusterLabel
	// maxHandlerSeed caps the captured payloads used as seeds here: a
	// handler run costs more than a decode, and the fuzzer minimizes every
	// new input for up to a minute, so 2 KB seeds stalled whole runs.
	maxHandlerSeed = 512
)

// fuzzNow is the clock of the handlers and heads these targets build, some
// weeks after the captured payloads' samples. The heads keep a century,
// so that fuzzed timestamps are stored and federated, not expired.
var fuzzNow = time.UnixMilli(1_800_000_000_000)

const fuzzRetention = 100 * 365 * 24 * time.Hour

// FuzzWriteHandler posts arbitrary bodies to the whole write handler, as
// sent (snappy) or as a protobuf the target compresses itself, so that the
// decoder is reached. It must never panic, answer only 204, 400, 413, 415
// or 429, and store only valid series: a valid metric name, valid, sorted,
// unique label names, non-empty valid UTF-8 values, the cluster label equal
// to the tenant, well-formed packed labels. Each body is posted twice, the
// second time through the memo of known series: alike.
func FuzzWriteHandler(f *testing.F) {
	for _, b := range capturedSeeds(f, maxHandlerSeed) {
		f.Add(b, true)
		f.Add(snappy.Encode(nil, b), false)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for n := range 6 {
		f.Add(remotewritetest.Random(rng, n), true)
	}
	f.Add(remotewritetest.KubernetesBytes(3, 2), true)
	f.Add([]byte{}, false)
	f.Add([]byte{}, true)

	f.Fuzz(func(t *testing.T, b []byte, compress bool) {
		if len(b) > maxHandlerInput {
			t.Skip("input over the size cap")
		}
		h, hd := newFuzzHandler(t)
		body := b
		if compress {
			body = snappy.Encode(nil, b)
		}
		if n, err := snappy.DecodedLen(body); err == nil && n > maxHandlerInput && n <= config.DefaultLimits().MaxRequestBytes {
			// Accepted, it would cost an allocation of n bytes per run,
			// which made the fuzzer's minimization stall for a minute.
			t.Skip("decoded size over the size cap, under the limit")
		}
		code := postWrite(h, body)
		switch code {
		case http.StatusNoContent, http.StatusBadRequest, http.StatusRequestEntityTooLarge,
			http.StatusUnsupportedMediaType, http.StatusTooManyRequests:
		default:
			t.Fatalf("status %d for a %d-byte body", code, len(body))
		}
		type sample struct {
			t int64
			v uint64
		}
		held := map[string]sample{}
		for _, s := range hd.AppendAllSeries(nil) {
			if err := checkStored(s); err != nil {
				t.Fatalf("stored series %q: %v", string(s.Labels()), err)
			}
			ts, v := s.Latest()
			held[string(s.Labels())] = sample{ts, math.Float64bits(v)}
		}
		// The same body again goes through the memo of known series where
		// the first went the full way: it must be answered alike and hold
		// exactly the same series, with the same newest samples (a sample
		// put on the wrong series would change one).
		switch again := postWrite(h, body); {
		case again == http.StatusTooManyRequests && code != again: // the first used the bucket up
		case again != code:
			t.Fatalf("status %d, then %d for the same body", code, again)
		case hd.NumSeries() != len(held):
			t.Fatalf("%d series held after the same body again, %d before", hd.NumSeries(), len(held))
		default:
			for _, s := range hd.AppendAllSeries(nil) {
				before, ok := held[string(s.Labels())]
				if !ok {
					t.Fatalf("the same body again made series %q", string(s.Labels()))
				}
				if ts, v := s.Latest(); (sample{ts, math.Float64bits(v)}) != before {
					t.Fatalf("series %q: newest sample (%d, %v) after the same body again, (%d, %v) before",
						string(s.Labels()), ts, v, before.t, math.Float64frombits(before.v))
				}
			}
		}
	})
}

// capturedSeeds returns a prefix of at most max bytes of each captured
// payload, decompressed: whole top-level fields, so that each is a valid
// request. Whole payloads would be poor seeds: the fuzzer minimizes every
// new interesting input for up to a minute, and minimizing a 30 KB one ate
// whole 60 s runs.
func capturedSeeds(f *testing.F, max int) [][]byte {
	captured, err := filepath.Glob("../gateway/remotewrite/testdata/*.snappy")
	if err != nil {
		f.Fatal(err)
	}
	if len(captured) == 0 {
		f.Fatal("no captured payloads in ../gateway/remotewrite/testdata")
	}
	var seeds [][]byte
	for _, name := range captured {
		compressed, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		b, err := snappy.Decode(nil, compressed)
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		h := remotewritetest.Head(b, max)
		if h == nil {
			f.Fatalf("%s: no valid prefix of at most %d bytes", name, max)
		}
		seeds = append(seeds, h)
	}
	return seeds
}

// newFuzzHandler returns a write handler for one tenant with the default
// limits, storing into a fresh in-memory head.
func newFuzzHandler(t *testing.T) (*gateway.WriteHandler, *head.Head) {
	t.Helper()
	cfg, err := config.Parse([]byte("tenants:\n  - {id: " + fuzzTenant + ", token: " + fuzzToken + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := gateway.NewSettings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return fuzzNow }
	hd := head.New(head.Options{Retention: fuzzRetention, Now: now}, nil)
	return gateway.NewWriteHandler(set, hd, gateway.WriteOptions{Now: now, Head: hd}, slog.New(slog.DiscardHandler), nil), hd
}

// postWrite posts a snappy body to h as Prometheus does and returns the
// status.
func postWrite(h http.Handler, body []byte) int {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-protobuf")
	r.Header.Set("Content-Encoding", "snappy")
	r.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	r.Header.Set("Authorization", "Bearer "+fuzzToken)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// checkStored checks one held series against what the write path
// promises, parsing its packed labels independently of head.LabelIter (with
// packedString of the WAL target).
func checkStored(s *head.Series) error {
	if s.Tenant() != fuzzTenant {
		return fmt.Errorf("tenant %q, want %q", s.Tenant(), fuzzTenant)
	}
	b := []byte(s.Labels())
	prev, name, cluster := "", "", ""
	hasName, hasCluster := false, false
	for i := 0; len(b) > 0; i++ {
		var n, v string
		var ok bool
		if n, b, ok = packedString(b); !ok {
			return fmt.Errorf("label %d: malformed name", i)
		}
		if v, b, ok = packedString(b); !ok {
			return fmt.Errorf("label %d: malformed value", i)
		}
		switch {
		case !validName(n, false):
			return fmt.Errorf("invalid label name %q", n)
		case i > 0 && n <= prev:
			return fmt.Errorf("label names not sorted and unique: %q after %q", n, prev)
		case v == "":
			return fmt.Errorf("label %s has an empty value", n)
		case !utf8.ValidString(v):
			return fmt.Errorf("label %s has invalid UTF-8 %q", n, v)
		}
		prev = n
		switch n {
		case "__name__":
			name, hasName = v, true
		case fuzzCluster:
			cluster, hasCluster = v, true
		}
	}
	if !hasName || !validName(name, true) {
		return fmt.Errorf("invalid or missing metric name %q", name)
	}
	if !hasCluster || cluster != fuzzTenant {
		return fmt.Errorf("cluster label %q (present: %v), want %q", cluster, hasCluster, fuzzTenant)
	}
	return nil
}

// validName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]*, or with
// metric, [a-zA-Z_:][a-zA-Z0-9_:]*.
func validName(s string, metric bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' ||
			i > 0 && c >= '0' && c <= '9' || metric && c == ':'
		if !ok {
			return false
		}
	}
	return true
}
