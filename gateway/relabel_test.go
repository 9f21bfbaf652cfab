package gateway

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
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

func newPipelineHandler(t *testing.T) (*WriteHandler, *head.Head, *relabel.Anonymizer) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "anon.key"), []byte("k3y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fedgate.yml")
	if err := os.WriteFile(path, []byte(pipelineConfig), 0o600); err != nil {
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
	return NewWriteHandler(s, hd, WriteOptions{Now: now}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry()), hd, anon
}

func TestPipelineInTheWritePath(t *testing.T) {
	h, hd, anon := newPipelineHandler(t)
	now := testNow.UnixMilli()
	body := encode(t,
		series(1, now, "__name__", "up", "instance", "10.0.0.1:9100", "job", "node", "cluster_id", "cluster-c"),
		series(2, now, "__name__", "node_load1", "instance", "10.0.0.1:9100", "version", "1.2"),
		series(3, now, "__name__", "go_goroutines", "instance", "10.0.0.1:9100"), // not allowed
	)
	if w := (post{body: body, token: "token-a"}).do(h); w.Code != 204 {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	inst := anon.Value("10.0.0.1:9100")
	for _, want := range [][]string{
		{"__name__", "up", "cluster_id", "cluster-a", "env", "prod", "instance", inst, "job", "node"},
		{"__name__", "node_load1", "cluster_id", "cluster-a", "env", "prod", "instance", inst},
	} {
		if _, _, ok := held(hd, want...); !ok {
			t.Errorf("not held: %v", want)
		}
	}
	if hd.NumSeries() != 2 {
		t.Fatalf("%d series held, want 2", hd.NumSeries())
	}
	if got := testutil.ToFloat64(h.metrics.discarded.WithLabelValues(relabel.ReasonAllowlist)); got != 1 {
		t.Errorf("discarded{allowlist} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.metrics.overwrites); got != 1 {
		t.Errorf("overwrites = %v, want 1 (the client's value, not the rule's)", got)
	}

	// cluster-b: its own anonymized labels replace the global list.
	body = encode(t, series(1, now, "__name__", "up", "instance", "i:1", "pod", "p-1"))
	if w := (post{body: body, token: "token-b"}).do(h); w.Code != 204 {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	if _, _, ok := held(hd, "__name__", "up", "cluster_id", "cluster-b", "instance", "i:1", "pod", anon.Value("p-1")); !ok {
		t.Error("cluster-b's series not held with only pod anonymized")
	}
}
