package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDefaultsAndOverrides(t *testing.T) {
	f, err := Parse([]byte(`
tenants:
  - id: a
    token: ta
  - id: b
    token_sha256: 23e1413681de92ff4ea6cdb511ea2937a4c628a4094257ad22597bcb20f0a476
    limits: {max_series: 10}
limits:
  max_labels_per_series: 20
`))
	if err != nil {
		t.Fatal(err)
	}
	if f.ClusterLabel != "cluster_id" || time.Duration(f.Storage.Retention) != 10*time.Minute {
		t.Fatalf("defaults not applied: %q %v", f.ClusterLabel, f.Storage.Retention)
	}
	a, b := f.Tenants[0].Limits, f.Tenants[1].Limits
	if a.MaxLabelsPerSeries != 20 || a.MaxSeries != 500000 || a.MaxRequestBytes != 32<<20 {
		t.Fatalf("tenant a limits = %+v", a)
	}
	if b.MaxSeries != 10 || b.MaxLabelsPerSeries != 20 {
		t.Fatalf("tenant b override not merged over the global limits: %+v", b)
	}
}

func TestParseRefuses(t *testing.T) {
	cases := map[string]string{
		"unknown key":             "tenantz: []",
		"unknown limit":           "limits: {max_seriez: 1}",
		"unknown tenant limit":    "tenants: [{id: a, token: t, limits: {bogus: 1}}]",
		"no token":                "tenants: [{id: a}]",
		"both tokens":             "tenants: [{id: a, token: t, token_sha256: 23e1413681de92ff4ea6cdb511ea2937a4c628a4094257ad22597bcb20f0a476}]",
		"bad digest":              "tenants: [{id: a, token_sha256: abc}]",
		"empty id":                "tenants: [{token: t}]",
		"duplicate id":            "tenants: [{id: a, token: t}, {id: a, token: u}]",
		"bad cluster label":       "cluster_label: 'cluster-id'",
		"name as cluster label":   "cluster_label: __name__",
		"negative limit":          "limits: {max_series: -1}",
		"huge request limit":      "limits: {max_request_bytes: 4000000000}",
		"zero retention":          "storage: {retention: 0s}",
		"zero checkpoint":         "storage: {checkpoint_interval: 0s}",
		"self not a member":       "ring: {self: gw-1, members: [{name: gw-0, url: 'http://127.0.0.1:9096'}]}",
		"relative member url":     "ring: {self: gw-0, members: [{name: gw-0, url: '127.0.0.1:9096'}]}",
		"two members":             "ring: {self: gw-0, members: [{name: gw-0, url: 'http://a:1'}, {name: gw-1, url: 'http://b:1'}]}",
		"allowlist not supported": "allowlist: ['up']",
		"relabel not supported":   "relabel_configs: [{action: drop}]",
		"anonymize not supported": "anonymize: {labels: [pod]}",
		"not yaml":                "tenants: [",
	}
	for name, y := range cases {
		if _, err := Parse([]byte(y)); err == nil {
			t.Errorf("%s: %q was accepted", name, y)
		} else if strings.Contains(err.Error(), "\n") && name != "not yaml" {
			t.Errorf("%s: error is not one line: %q", name, err)
		}
	}
}

func TestLoadExample(t *testing.T) {
	f, err := Load(filepath.Join("..", "..", "examples", "fedgate.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tenants) < 2 {
		t.Fatalf("the example has %d tenants, want at least 2", len(f.Tenants))
	}
	empty := filepath.Join(t.TempDir(), "empty.yml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := Load(empty); err != nil || len(f.Tenants) != 0 {
		t.Fatalf("an empty file should load as defaults: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yml")); err == nil {
		t.Fatal("a missing file loaded")
	}
}
