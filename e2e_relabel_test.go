package main

// End-to-end test of the series pipeline (allowlist → global relabel →
// tenant relabel → anonymize → cluster label) and of its live reload, with a
// real Prometheus Agent pushing to fedgate and a central Prometheus scraping
// its /federate. Everything is observed from outside: the central's query
// API, /federate and fedgate's /metrics.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

const (
	// relabelFedgateConfig is the configuration of the feature's issue;
	// {{...}} are filled in per stage of the test.
	relabelFedgateConfig = `cluster_label: cluster_id
allowlist:
  - '{{selector}}'
relabel_configs:
  - action: labeldrop
    regex: version
anonymize:
  labels: [instance]
  secret_file: '{{secret_file}}'
tenants:
  - id: cluster-a
    token: {{token_a}}
    relabel_configs:
{{tenant_rules}}
    anonymize: {labels: [instance, job]}
  - id: cluster-b
    token: {{token_b}}
storage:
  retention: 10m
`
	relabelSecret = "e2e-anonymization-secret\n" // the trailing newline is not part of the key
	relabelTokenA = "e2e-relabel-token-a"
	relabelTokenB = "e2e-relabel-token-b"
	relabelJob    = "relabel-self" // the Agent's scrape job, anonymized for cluster-a

	allowedNames = "up|prometheus_build_info|prometheus_tsdb_head_series"
	widerNames   = allowedNames + "|go_goroutines"
	rulesProd    = "      - {action: replace, target_label: env, replacement: prod}"
)

// anonymized is the value fedgate must put in place of value: the first 16
// bytes of HMAC-SHA256 keyed with the secret file's content (trailing
// newline trimmed), base64url without padding.
func anonymized(value string) string {
	m := hmac.New(sha256.New, []byte(strings.TrimRight(relabelSecret, "\n")))
	m.Write([]byte(value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// relabelRig is a fedgate with the pipeline configured, a Prometheus Agent
// pushing to it as cluster-a and a central Prometheus scraping /federate.
type relabelRig struct {
	fg                     *process
	public, internal       string
	agentAddr, central     string
	configPath, secretPath string
	procs                  []*process
	wantInstance, wantJob  string // cluster-a's anonymized instance and job
}

// writeConfig rewrites fedgate's config file with an allowlist selector and
// cluster-a's relabel rules.
func (r *relabelRig) writeConfig(t *testing.T, selector, tenantRules string) {
	t.Helper()
	cfg := fill(relabelFedgateConfig, "selector", selector, "secret_file", r.secretPath,
		"token_a", relabelTokenA, "token_b", relabelTokenB, "tenant_rules", tenantRules)
	if err := os.WriteFile(r.configPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// metric returns the sum of a metric on fedgate's /metrics.
func (r *relabelRig) metric(name string) (float64, error) {
	return scrapeValue("http://"+r.internal+"/metrics", name)
}

// waitMetric waits until ok accepts the value of a metric on fedgate's /metrics.
func (r *relabelRig) waitMetric(t *testing.T, name, want string, ok func(float64) bool) {
	t.Helper()
	eventually(t, 20*time.Second, name+" "+want, func() error {
		v, err := r.metric(name)
		if err == nil && !ok(v) {
			err = fmt.Errorf("value %v", v)
		}
		return err
	}, r.procs...)
}

// reload POSTs /-/reload on the internal listener.
func (r *relabelRig) reload(t *testing.T) (int, string) {
	t.Helper()
	resp, err := httpClient.Post("http://"+r.internal+"/-/reload", "", nil)
	if err != nil {
		t.Fatalf("POST /-/reload: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST /-/reload: %v", err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// cleanLabels is the exact label set of a cluster-a series after the
// pipeline: its name, the stamped cluster label, the tenant's env and the
// anonymized instance and job; nothing else.
func (r *relabelRig) cleanLabels(name, env string) map[string]string {
	return map[string]string{"__name__": name, "cluster_id": "cluster-a", "env": env,
		"instance": r.wantInstance, "job": r.wantJob}
}

// waitSeries waits until query returns series at the central, and requires
// each to carry exactly want's labels.
func (r *relabelRig) waitSeries(t *testing.T, query string, want map[string]string) {
	t.Helper()
	waitQuery(t, r.central, query, 30*time.Second, func(v []promSample) error {
		if len(v) == 0 {
			return errEmpty
		}
		for _, s := range v {
			if !maps.Equal(s.Metric, want) {
				return final{fmt.Errorf("labels %v, want exactly %v", s.Metric, want)}
			}
		}
		return nil
	}, r.procs...)
}

// newest returns the newest sample timestamp of selector at the central, in
// unix milliseconds, or 0 when it selects nothing.
func (r *relabelRig) newest(selector string) (int64, error) {
	v, err := promQuery(r.central, "max(timestamp("+selector+"))")
	if err != nil || len(v) == 0 {
		return 0, err
	}
	f, err := strconv.ParseFloat(v[0].value(), 64)
	return int64(f*1000 + 0.5), err
}

// waitNewer waits until selector has a sample at the central newer than after.
func (r *relabelRig) waitNewer(t *testing.T, selector string, after time.Time) {
	t.Helper()
	eventually(t, 20*time.Second, selector+" with a sample after "+after.Format(time.StampMilli), func() error {
		ts, err := r.newest(selector)
		if err == nil && ts <= after.UnixMilli() {
			err = fmt.Errorf("newest sample at %d ms", ts)
		}
		return err
	}, r.procs...)
}

func startRelabelRig(t *testing.T) *relabelRig {
	t.Helper()
	dir := t.TempDir()
	r := &relabelRig{
		public: freeAddr(t), internal: freeAddr(t),
		configPath: filepath.Join(dir, "fedgate.yml"),
		secretPath: writeFile(t, dir, "anon.key", relabelSecret),
		wantJob:    anonymized(relabelJob),
	}
	r.writeConfig(t, `{__name__=~"`+allowedNames+`"}`, rulesProd)
	r.fg = startProcess(t, "fedgate", fedgateBin,
		"--config.file="+r.configPath,
		"--storage.path="+t.TempDir(),
		"--web.listen-address="+r.public,
		"--web.internal-listen-address="+r.internal,
		"--log.level=debug")
	waitHTTP200(t, "http://"+r.public+"/-/ready", 30*time.Second, r.fg)

	// agentConfig also forges cluster_id=cluster-b as an external label.
	r.agentAddr = freeAddr(t)
	r.wantInstance = anonymized(r.agentAddr)
	agent := startPrometheus(t, "cluster-a-agent", r.agentAddr,
		fill(agentConfig, "job", relabelJob, "self", r.agentAddr, "fedgate", r.public, "token", relabelTokenA), true)
	centralAddr := freeAddr(t)
	central := startPrometheus(t, "central-prometheus", centralAddr,
		fill(centralConfig, "fedgate_internal", r.internal), false)
	r.central = "http://" + centralAddr
	r.procs = []*process{r.fg, agent, central}
	return r
}

// TestRelabelAnonymizeEndToEnd: a Prometheus Agent pushes its own metrics as
// cluster-a through fedgate's pipeline; at the central Prometheus only the
// allowlisted series arrive, with version dropped, env added, instance and
// job replaced by their keyed hashes and the cluster label stamped last.
// Another tenant gets the global rules only. Then the config is reloaded
// live: a wider allowlist (POST /-/reload), an invalid file (refused, the
// running config stays, pushes go on), new tenant rules (SIGHUP).
func TestRelabelAnonymizeEndToEnd(t *testing.T) {
	skipIfShort(t)
	requirePeers(t)
	r := startRelabelRig(t)
	if len(r.wantInstance) != 22 || len(r.wantJob) != 22 {
		t.Fatalf("expected anonymized values %q %q are not 22 characters", r.wantInstance, r.wantJob)
	}
	checkPipeline(t, r)
	checkGlobalRulesOnly(t, r)
	checkReloadWider(t, r)
	checkReloadInvalid(t, r)
	checkReloadSIGHUP(t, r)
}

// checkPipeline asserts what the first config does to the Agent's series.
func checkPipeline(t *testing.T, r *relabelRig) {
	// Allowed series arrive with exactly the labels the pipeline leaves.
	r.waitSeries(t, `{cluster_id="cluster-a", __name__="up"}`, r.cleanLabels("up", "prod"))
	want := r.cleanLabels("prometheus_build_info", "prod")
	waitQuery(t, r.central, `prometheus_build_info{cluster_id="cluster-a"}`, 30*time.Second, func(v []promSample) error {
		if len(v) == 0 {
			return errEmpty
		}
		for _, s := range v {
			if _, ok := s.Metric["version"]; ok {
				return final{errors.New("label version was not dropped")}
			}
			for k, w := range want {
				if s.Metric[k] != w {
					return final{fmt.Errorf("%s=%q, want %q", k, s.Metric[k], w)}
				}
			}
			if s.Metric["revision"] == "" {
				return final{errors.New("label revision, which no rule touches, is gone")}
			}
		}
		return nil
	}, r.procs...)

	// Absence means something once fedgate has refused some of the Agent's
	// series and the central has scraped /federate since. The central's
	// lookback (5m) spans the whole test, so "empty now" means "never".
	r.waitMetric(t, `fedgate_discarded_samples_total{reason="allowlist"}`, "> 0", func(v float64) bool { return v > 0 })
	r.waitNewer(t, `up{job="federate"}`, time.Now())
	for _, q := range []string{
		`{cluster_id="cluster-a", __name__!~"` + allowedNames + `"}`, // go_*, process_*, the rest of prometheus_*
		`{__name__=~".+", version!=""}`,
		`{__name__=~".+", instance="` + r.agentAddr + `"}`,
		`{__name__=~".+", job="` + relabelJob + `"}`,
		`{__name__=~".+", env="prod", cluster_id!="cluster-a"}`, // the Agent's forged cluster_id lost
	} {
		requireEmpty(t, r.central, q)
	}
	v, err := promQuery(r.central, `count by (instance, job, env) ({cluster_id="cluster-a"})`)
	if err != nil {
		t.Fatal(err)
	}
	wantKey := map[string]string{"instance": r.wantInstance, "job": r.wantJob, "env": "prod"}
	if len(v) != 1 || !maps.Equal(v[0].Metric, wantKey) {
		t.Errorf("cluster-a's series by (instance, job, env): %s; want one row %v", summary(v), wantKey)
	}
}

// checkGlobalRulesOnly pushes as cluster-b, which has no rules of its own:
// the global allowlist, labeldrop and anonymized labels (instance only)
// apply, cluster-a's do not, and dropped series still get a 204.
func checkGlobalRulesOnly(t *testing.T, r *relabelRig) {
	now := time.Now().UnixMilli()
	series := func(name string) prompb.TimeSeries {
		return prompb.TimeSeries{
			Labels: []prompb.Label{
				{Name: "__name__", Value: name}, {Name: "instance", Value: "host-b:9100"},
				{Name: "job", Value: "node"}, {Name: "version", Value: "1.2.3"},
			},
			Samples: []prompb.Sample{{Value: 1, Timestamp: now}},
		}
	}
	for _, c := range []struct {
		what   string
		series []prompb.TimeSeries
	}{
		{"an allowed and a refused series", []prompb.TimeSeries{series("up"), series("node_cpu_seconds_total")}},
		{"refused series only", []prompb.TimeSeries{series("node_load1")}},
	} {
		code, err := pushWith(t, httpClient, "http://"+r.public+"/api/v1/write", relabelTokenB, encodeSeries(t, c.series...))
		if err != nil || code != http.StatusNoContent {
			t.Fatalf("push of %s: status %d (%v); want 204, dropped series are not errors", c.what, code, err)
		}
	}
	lines, err := federated(httpClient, "http://"+r.internal, `{cluster_id="cluster-b"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`up{cluster_id="cluster-b",instance=%q,job="node"} `, anonymized("host-b:9100"))
	if len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
		t.Errorf("/federate for cluster-b: %q; want one series %s", lines, want)
	}
}

// checkReloadWider widens the allowlist by POST /-/reload.
func checkReloadWider(t *testing.T, r *relabelRig) {
	r.writeConfig(t, `{__name__=~"`+widerNames+`"}`, rulesProd)
	if code, body := r.reload(t); code != http.StatusOK {
		t.Fatalf("POST /-/reload of a valid config: status %d: %s", code, body)
	}
	r.waitMetric(t, "fedgate_config_last_reload_successful", "== 1", func(v float64) bool { return v == 1 })
	r.waitSeries(t, `go_goroutines{cluster_id="cluster-a"}`, r.cleanLabels("go_goroutines", "prod"))
	// Only the name added passes: the central holds go_goroutines, no other go_ series.
	requireEmpty(t, r.central, `{cluster_id="cluster-a", __name__=~"go_.*", __name__!="go_goroutines"}`)
}

// checkReloadInvalid reloads a file with a broken selector: refused, the
// running (wider) config stays, and pushes go on.
func checkReloadInvalid(t *testing.T, r *relabelRig) {
	r.writeConfig(t, `{__name__=~"`+widerNames+`"`, rulesProd) // no closing brace
	code, body := r.reload(t)
	if code == http.StatusOK {
		t.Fatalf("POST /-/reload of an invalid allowlist answered 200: %s", body)
	}
	t.Logf("POST /-/reload of an invalid allowlist: status %d: %s", code, body)
	if v, err := r.metric("fedgate_config_last_reload_successful"); err != nil || v != 0 {
		t.Errorf("fedgate_config_last_reload_successful = %v (%v) after a failed reload, want 0", v, err)
	}
	failed := time.Now()
	accepted, err := r.metric("fedgate_accepted_samples_total")
	if err != nil {
		t.Fatal(err)
	}
	r.waitMetric(t, "fedgate_accepted_samples_total", fmt.Sprintf("> %v", accepted), func(v float64) bool { return v > accepted })
	r.waitNewer(t, `go_goroutines{cluster_id="cluster-a"}`, failed)
}

// checkReloadSIGHUP reloads new tenant rules by SIGHUP: env changes,
// go_goroutines is dropped by a rule (reason="relabel") and a rule that sets
// the cluster label is overridden by the stamp.
func checkReloadSIGHUP(t *testing.T, r *relabelRig) {
	const rules = `      - {action: replace, target_label: env, replacement: staging}
      - {action: drop, source_labels: [__name__], regex: go_goroutines}
      - {action: replace, target_label: cluster_id, replacement: cluster-b}`
	const relabelDrops = `fedgate_discarded_samples_total{reason="relabel"}`
	r.writeConfig(t, `{__name__=~"`+widerNames+`"}`, rules)
	dropped, err := r.metric(relabelDrops)
	if err != nil {
		dropped = 0 // not exposed before the first drop
	}
	if err := r.fg.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r.waitMetric(t, "fedgate_config_last_reload_successful", "== 1 after SIGHUP", func(v float64) bool { return v == 1 })
	applied := time.Now()
	r.waitSeries(t, `up{cluster_id="cluster-a", env="staging"}`, r.cleanLabels("up", "staging"))
	r.waitMetric(t, relabelDrops, fmt.Sprintf("> %v", dropped), func(v float64) bool { return v > dropped })
	r.waitNewer(t, `up{cluster_id="cluster-a", env="staging"}`, applied)

	newest, err := r.newest(`go_goroutines{cluster_id="cluster-a"}`)
	if err != nil {
		t.Fatal(err)
	}
	if newest > applied.UnixMilli() {
		t.Errorf("go_goroutines has a sample at %d ms, after the rule dropping it was in force (%d ms)", newest, applied.UnixMilli())
	}
	requireEmpty(t, r.central, `{__name__=~".+", env="staging", cluster_id!="cluster-a"}`)
}

// encodeSeries returns a remote-write 1.0 body holding series.
func encodeSeries(t *testing.T, series ...prompb.TimeSeries) []byte {
	t.Helper()
	b, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, b)
}

// TestAnonymizeSecretRequired: fedgate refuses to start when anonymization
// is configured and its secret file is missing or empty, and says which file.
func TestAnonymizeSecretRequired(t *testing.T) {
	skipIfShort(t)
	dir := t.TempDir()
	for name, secret := range map[string]string{
		"missing":        filepath.Join(dir, "absent.key"),
		"empty":          writeFile(t, dir, "empty.key", ""),
		"only a newline": writeFile(t, dir, "newline.key", "\n"),
	} {
		t.Run(name, func(t *testing.T) {
			cfg := fill(relabelFedgateConfig, "selector", `{__name__=~"`+allowedNames+`"}`, "secret_file", secret,
				"token_a", relabelTokenA, "token_b", relabelTokenB, "tenant_rules", rulesProd)
			p := startProcess(t, "fedgate", fedgateBin,
				"--config.file="+writeFile(t, t.TempDir(), "fedgate.yml", cfg),
				"--storage.path="+t.TempDir(),
				"--web.listen-address="+freeAddr(t),
				"--web.internal-listen-address="+freeAddr(t))
			if !p.waitExit(15 * time.Second) {
				t.Fatalf("fedgate still running 15s after starting with a %s secret file", name)
			}
			if p.cmd.ProcessState.ExitCode() == 0 {
				t.Errorf("fedgate exited 0 with a %s secret file", name)
			}
			if out, err := os.ReadFile(p.log); err != nil || !strings.Contains(string(out), secret) {
				t.Errorf("the startup error does not name the secret file %s: %s", secret, out)
			}
		})
	}
}
