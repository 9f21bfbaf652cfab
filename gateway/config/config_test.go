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
		"relative member url":     "ring: {self: gw-0, members: [{name: gw-0, url: '127.0.0.1:9096'}]}",
		"members and dns":         "ring: {self: gw-0, dns: 'x:1', members: [{name: gw-0, url: 'http://a:1'}]}",
		"bad allowlist selector":  "allowlist: ['up{']",
		"match-all selector":      "allowlist: ['{job=~\".*\"}']",
		"unknown relabel action":  "relabel_configs: [{action: explode}]",
		"relabel without target":  "relabel_configs: [{action: replace, source_labels: [a]}]",
		"relabel UTF-8 target":    "relabel_configs: [{action: replace, target_label: 'a-b', replacement: x}]",
		"tenant relabel invalid":  "tenants: [{id: a, token: t, relabel_configs: [{action: hashmod, target_label: x}]}]",
		"anonymize metric name":   "anonymize: {labels: [__name__]}",
		"anonymize cluster label": "anonymize: {labels: [cluster_id]}",
		"tenant anonymize bad":    "tenants: [{id: a, token: t, anonymize: {labels: ['a b']}}]",
		"not yaml":                "tenants: [",
		"NaN rate":                "limits: {ingestion_rate: .nan}",
		"infinite rate":           "limits: {ingestion_rate: .inf}",
		"tenant NaN rate":         "tenants: [{id: a, token: t, limits: {ingestion_rate: .NaN}}]",
		"empty token's digest":    "tenants: [{id: a, token_sha256: E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855}]",
		"id over the value limit": "tenants: [{id: abcdef, token: t, limits: {max_label_value_length: 5}}]",
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

func TestAnonymizeSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("anon.key", "s3cret\n")
	write("empty.key", "\n")
	cases := []struct {
		name, yml string
		ok        bool
	}{
		{"relative secret file", "anonymize: {labels: [pod], secret_file: anon.key}", true},
		{"tenant-only labels need it too", "anonymize: {secret_file: anon.key}\ntenants: [{id: a, token: t, anonymize: {labels: [pod]}}]", true},
		{"no labels, no secret needed", "anonymize: {labels: []}", true},
		{"missing secret_file", "anonymize: {labels: [pod]}", false},
		{"tenant labels without secret", "tenants: [{id: a, token: t, anonymize: {labels: [pod]}}]", false},
		{"secret file absent", "anonymize: {labels: [pod], secret_file: nope.key}", false},
		{"empty secret", "anonymize: {labels: [pod], secret_file: empty.key}", false},
	}
	for _, c := range cases {
		f, err := Load(write("fedgate.yml", c.yml))
		if (err == nil) != c.ok {
			t.Errorf("%s: Load error = %v, want ok=%v", c.name, err, c.ok)
			continue
		}
		if c.ok && len(f.Anonymize.Labels)+len(f.Tenants) > 0 && f.Anonymize.SecretFile != "" && string(f.Anonymize.Secret) != "s3cret" {
			t.Errorf("%s: secret = %q, want the file's content without its newline", c.name, f.Anonymize.Secret)
		}
	}
}

func TestRelabelConfigsParse(t *testing.T) {
	f, err := Parse([]byte(`
relabel_configs:
  - {action: labeldrop, regex: version}
tenants:
  - id: a
    token: t
    relabel_configs:
      - {source_labels: [job], regex: 'node', target_label: team, replacement: infra}
    anonymize: {labels: [instance]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.RelabelConfigs) != 1 || !f.RelabelConfigs[0].Regex.MatchString("version") || f.RelabelConfigs[0].Regex.MatchString("versions") {
		t.Fatalf("global rule not parsed with Prometheus' defaults: %+v", f.RelabelConfigs)
	}
	r := f.Tenants[0].RelabelConfigs[0]
	if r.Action != "replace" || r.Separator != ";" || r.TargetLabel != "team" {
		t.Fatalf("tenant rule = %+v", r)
	}
	if got := f.AnonymizedLabels(&f.Tenants[0]); len(got) != 1 || got[0] != "instance" {
		t.Fatalf("tenant anonymized labels = %v", got)
	}
}

// TestRingTLSConfigIsChecked: ring.tls_config's files are read at load,
// relative to the config file: a missing one is refused then, not at the
// first forward.
func TestRingTLSConfigIsChecked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fedgate.yml")
	if err := os.WriteFile(path, []byte("ring: {tls_config: {ca_file: missing-ca.pem}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "ring: tls_config") || !strings.Contains(err.Error(), filepath.Join(dir, "missing-ca.pem")) {
		t.Fatalf("a missing ca_file: %v", err)
	}
}
