package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/relabel"
	"github.com/fedgate/fedgate/wal/head"
)

const pipelineConfig = `
allowlist: ['{__name__=~"up|node_.*"}']
relabel_configs:
  - {action: labeldrop, regex: version}
anonymize: {labels: [instance], secret_file: anon.key}
tenants:
  - id: cluster-a
    token: token-a
    relabel_configs:
      - {action: replace, target_label: env, replacement: prod}
      - {action: replace, target_label: cluster_id, replacement: cluster-b}  # a rule cannot forge it either
  - id: cluster-b
    token: token-b
    anonymize: {labels: [pod]}
`

func newPipelineHandler(t *testing.T, cacheSize int) (*WriteHandler, *head.Head, *relabel.Anonymizer) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "anon.key"), []byte("k3y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fedgate.yml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("relabel_cache_size: %d\n%s", cacheSize, pipelineConfig)), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSettings(f)
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return testNow }
	hd := head.New(head.Options{Retention: 10 * time.Minute, Now: now}, prometheus.NewRegistry())
	anon, _ := relabel.NewAnonymizer([]byte("k3y"), 16)
	return NewWriteHandler(s, hd, WriteOptions{Now: now, Head: hd}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry()), hd, anon
}

// TestPipelineInTheWritePath pushes the same series several times, with
// the memo on (later pushes are memo hits) and off: the result must be the
// same every time.
func TestPipelineInTheWritePath(t *testing.T) {
	for _, cacheSize := range []int{0, 1024} {
		t.Run(fmt.Sprintf("relabel_cache_size=%d", cacheSize), func(t *testing.T) {
			h, hd, anon := newPipelineHandler(t, cacheSize)
			inst := anon.Value("10.0.0.1:9100")
			for round := range 3 {
				now := testNow.UnixMilli() + int64(round)
				body := encode(t,
					series(1, now, "__name__", "up", "instance", "10.0.0.1:9100", "job", "node", "cluster_id", "cluster-c"),
					series(2, now, "__name__", "node_load1", "instance", "10.0.0.1:9100", "version", "1.2"),
					series(3, now, "__name__", "go_goroutines", "instance", "10.0.0.1:9100"), // not allowed
				)
				if w := (post{body: body, token: "token-a"}).do(h); w.Code != 204 {
					t.Fatalf("round %d: got %d %s", round, w.Code, w.Body)
				}
				for _, want := range [][]string{
					{"__name__", "up", "cluster_id", "cluster-a", "env", "prod", "instance", inst, "job", "node"},
					{"__name__", "node_load1", "cluster_id", "cluster-a", "env", "prod", "instance", inst},
				} {
					if _, ts, ok := held(hd, want...); !ok || ts != now {
						t.Errorf("round %d: not held at %d: %v", round, now, want)
					}
				}
				if hd.NumSeries() != 2 {
					t.Fatalf("round %d: %d series held, want 2", round, hd.NumSeries())
				}
				if got := testutil.ToFloat64(h.metrics.discarded.WithLabelValues(relabel.ReasonAllowlist)); got != float64(round+1) {
					t.Errorf("round %d: discarded{allowlist} = %v", round, got)
				}
				if got := testutil.ToFloat64(h.metrics.overwrites); got != float64(round+1) {
					t.Errorf("round %d: overwrites = %v (the client's value counts, not the rule's)", round, got)
				}
			}
			// cluster-b: its own anonymized labels replace the global list; the
			// same input under another tenant is another memo entry.
			body := encode(t, series(1, testNow.UnixMilli(), "__name__", "up", "instance", "10.0.0.1:9100", "job", "node", "pod", "p-1"))
			if w := (post{body: body, token: "token-b"}).do(h); w.Code != 204 {
				t.Fatalf("got %d %s", w.Code, w.Body)
			}
			if _, _, ok := held(hd, "__name__", "up", "cluster_id", "cluster-b", "instance", "10.0.0.1:9100", "job", "node", "pod", anon.Value("p-1")); !ok {
				t.Error("cluster-b's series not held with only pod anonymized")
			}
		})
	}
}

// TestPipelineRefusesDuplicateLabelNames: a name given twice is refused
// with 400 for a tenant with a pipeline too, whose rules would otherwise
// keep one of its values; with the memo on or off.
func TestPipelineRefusesDuplicateLabelNames(t *testing.T) {
	for _, cacheSize := range []int{0, 1024} {
		h, hd, _ := newPipelineHandler(t, cacheSize)
		for _, token := range []string{"token-a", "token-b"} {
			body := encode(t, series(1, testNow.UnixMilli(), "__name__", "up", "job", "a", "job", "b"))
			w := (post{body: body, token: token}).do(h)
			if w.Code != 400 || !strings.Contains(w.Body.String(), `duplicate label name "job"`) {
				t.Fatalf("relabel_cache_size=%d, %s: got %d %q, want 400 duplicate label name", cacheSize, token, w.Code, w.Body)
			}
		}
		if n := hd.NumSeries(); n != 0 {
			t.Fatalf("relabel_cache_size=%d: %d series stored", cacheSize, n)
		}
	}
}
