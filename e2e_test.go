package main

// End-to-end tests with real peers: stock Prometheus (Agent and server mode)
// and vmagent push to one fedgate, and a central Prometheus scrapes its
// /federate endpoint. Everything is driven through the contracts in
// DESIGN.md: the command line, the config file and the HTTP endpoints.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// fedgateBin is the binary TestMain builds from the working tree.
var fedgateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fedgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: make temp dir:", err)
		os.Exit(1)
	}
	fedgateBin = filepath.Join(dir, "fedgate")
	if out, err := exec.Command("go", "build", "-o", fedgateBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building fedgate (go build -o %s .) failed: %v\n%s", fedgateBin, err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// skipIfShort skips an end-to-end test under -short (make test-unit). A
// missing peer is never a reason to skip: requirePeers fails the test.
func skipIfShort(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test; runs without -short")
	}
}

// cluster is one pushing tenant: its ID is the cluster label value.
type cluster struct {
	id, token, job string
}

var clusters = []cluster{
	{id: "cluster-a", token: "e2e-token-a", job: "cluster-a-self"}, // Prometheus Agent, bearer
	{id: "cluster-b", token: "e2e-token-b", job: "cluster-b-self"}, // Prometheus server, basic auth
	{id: "cluster-c", token: "e2e-token-c", job: "cluster-c-self"}, // vmagent, bearer
}

// The configs below are the ones the README shows; {{...}} are filled in.
const (
	// cluster-a: Prometheus Agent with a bearer token. It forges the cluster
	// label of cluster-b, which fedgate must overwrite.
	agentConfig = `global:
  scrape_interval: 1s
  external_labels:
    cluster_id: cluster-b # forged: fedgate overwrites it with cluster-a
scrape_configs:
  - job_name: {{job}}
    static_configs:
      - targets: ['{{self}}']
remote_write:
  - url: http://{{fedgate}}/api/v1/write
    authorization:
      credentials: {{token}}
    queue_config:
      batch_send_deadline: 1s
`
	// cluster-b: server-mode Prometheus with basic auth (username = tenant id).
	serverConfig = `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: cluster-b-self
    static_configs:
      - targets: ['{{self}}']
remote_write:
  - url: http://{{fedgate}}/api/v1/write
    basic_auth:
      username: cluster-b
      password: {{token}}
    queue_config:
      batch_send_deadline: 1s
`
	// cluster-c: vmagent; remote write is set by flags (see startVMAgent).
	vmagentScrapeConfig = `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: cluster-c-self
    static_configs:
      - targets: ['{{self}}']
`
	// The central Prometheus scrapes fedgate's internal /federate.
	centralConfig = `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: federate
    honor_labels: true
    metrics_path: /federate
    params:
      'match[]': ['{__name__=~".+"}']
    static_configs:
      - targets: ['{{fedgate_internal}}']
`
)

// waitUpStamped waits until the central Prometheus has up{job} == 1, every
// series of it carrying cluster_id=id.
func waitUpStamped(t *testing.T, central, job, id string, timeout time.Duration, procs ...*process) {
	t.Helper()
	waitQuery(t, central, fmt.Sprintf(`up{job=%q}`, job), timeout, func(v []promSample) error {
		if len(v) == 0 {
			return errEmpty
		}
		for _, s := range v {
			if s.Metric["cluster_id"] != id {
				return final{fmt.Errorf("want cluster_id=%q", id)}
			}
			if s.value() != "1" {
				return errors.New("want up == 1")
			}
		}
		return nil
	}, procs...)
}

// fill replaces {{key}} placeholders: fill(s, "self", addr, ...).
func fill(tmpl string, kv ...string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		tmpl = strings.ReplaceAll(tmpl, "{{"+kv[i]+"}}", kv[i+1])
	}
	if i := strings.Index(tmpl, "{{"); i >= 0 {
		panic("unfilled placeholder in config: " + tmpl[i:])
	}
	return tmpl
}

// startPrometheus starts a Prometheus in server mode, or in Agent mode, on
// addr and waits until it is ready.
func startPrometheus(t *testing.T, name, addr, config string, agent bool) *process {
	t.Helper()
	return startPrometheusBin(t, "prometheus", "--enable-feature=agent", name, addr, config, agent)
}

// startPrometheusBin starts the Prometheus binary bin, in Agent mode (with
// agentFlag, which differs between 2.x and 3.x) or as a server, and waits
// until it is ready.
func startPrometheusBin(t *testing.T, bin, agentFlag, name, addr, config string, agent bool) *process {
	t.Helper()
	dir := t.TempDir()
	args := []string{
		"--config.file=" + writeFile(t, dir, "prometheus.yml", config),
		"--web.listen-address=" + addr,
		"--storage.remote.flush-deadline=1s", // do not linger on shutdown
	}
	if agent {
		args = append(args, agentFlag, "--storage.agent.path="+filepath.Join(dir, "data"))
	} else {
		args = append(args, "--storage.tsdb.path="+filepath.Join(dir, "data"))
	}
	p := startProcess(t, name, bin, args...)
	waitHTTP200(t, "http://"+addr+"/-/ready", 30*time.Second, p)
	return p
}

// startVMAgent starts vmagent on addr, scraping per scrapeConfig and
// remote-writing to writeURL with a bearer token, and waits until it is healthy.
func startVMAgent(t *testing.T, name, addr, scrapeConfig, writeURL, token string) *process {
	t.Helper()
	dir := t.TempDir()
	p := startProcess(t, name, "vmagent",
		"-httpListenAddr="+addr,
		"-promscrape.config="+writeFile(t, dir, "scrape.yml", scrapeConfig),
		"-remoteWrite.url="+writeURL,
		"-remoteWrite.bearerToken="+token,
		"-remoteWrite.flushInterval=1s",
		"-remoteWrite.tmpDataPath="+filepath.Join(dir, "data"),
	)
	waitHTTP200(t, "http://"+addr+"/health", 30*time.Second, p)
	return p
}

// fedgate is a running fedgate with its two listeners (host:port).
type fedgate struct {
	*process
	public, internal string
}

// startFedgate starts fedgate with one tenant per cluster and a ring of one,
// extra flags appended to its command line, and waits until it is ready.
func startFedgate(t *testing.T, extra ...string) *fedgate {
	t.Helper()
	fg := launchFedgate(t, extra...)
	waitHTTP200(t, "http://"+fg.public+"/-/ready", 30*time.Second, fg.process)
	return fg
}

// launchFedgate starts fedgate as startFedgate does, without waiting for it
// to be ready: a caller that sets --web.config.file waits over HTTPS.
func launchFedgate(t *testing.T, extra ...string) *fedgate {
	t.Helper()
	public, internal := freeAddr(t), freeAddr(t)
	var cfg strings.Builder
	cfg.WriteString("cluster_label: cluster_id\ntenants:\n")
	for _, c := range clusters {
		fmt.Fprintf(&cfg, "  - {id: %s, token: %s}\n", c.id, c.token)
	}
	fmt.Fprintf(&cfg, "storage:\n  retention: 10m\nring:\n  self: gw-0\n  members:\n    - {name: gw-0, url: 'http://%s'}\n", internal)

	args := []string{
		"--config.file=" + writeFile(t, t.TempDir(), "fedgate.yml", cfg.String()),
		"--storage.path=" + t.TempDir(),
		"--web.listen-address=" + public,
		"--web.internal-listen-address=" + internal,
		"--log.level=debug",
	}
	p := startProcess(t, "fedgate", fedgateBin, append(args, extra...)...)
	return &fedgate{process: p, public: public, internal: internal}
}

func TestEndToEndRealPeers(t *testing.T) {
	skipIfShort(t)
	requirePeers(t)
	fg := startFedgate(t)
	writeURL := "http://" + fg.public + "/api/v1/write"

	refusedMetric := "fedgate_e2e_refused_push"
	checkRefused(t, writeURL, encodeWriteRequest(refusedMetric))

	// Each port is picked right before its process starts, to keep the window
	// in which something else could take it short.
	addrA := freeAddr(t)
	agent := startPrometheus(t, "cluster-a-agent", addrA,
		fill(agentConfig, "job", clusters[0].job, "self", addrA, "fedgate", fg.public, "token", clusters[0].token), true)
	addrB := freeAddr(t)
	server := startPrometheus(t, "cluster-b-prometheus", addrB,
		fill(serverConfig, "self", addrB, "fedgate", fg.public, "token", clusters[1].token), false)
	addrC := freeAddr(t)
	vmagent := startVMAgent(t, "cluster-c-vmagent", addrC,
		fill(vmagentScrapeConfig, "self", addrC), writeURL, clusters[2].token)
	addrCentral := freeAddr(t)
	centralProm := startPrometheus(t, "central-prometheus", addrCentral,
		fill(centralConfig, "fedgate_internal", fg.internal), false)
	procs := []*process{fg.process, agent, server, vmagent, centralProm}

	central := "http://" + addrCentral
	deadline := time.Now().Add(90 * time.Second)
	for _, c := range clusters {
		// Each cluster's own up series arrives, stamped with its own ID.
		waitUpStamped(t, central, c.job, c.id, time.Until(deadline), procs...)
		// Every series of the job carries exactly that cluster label.
		waitQuery(t, central, fmt.Sprintf(`count by (cluster_id) ({job=%q})`, c.job), time.Until(deadline), func(v []promSample) error {
			if len(v) == 0 {
				return errEmpty
			}
			if len(v) != 1 || v[0].Metric["cluster_id"] != c.id {
				return final{fmt.Errorf("want exactly one row, with cluster_id=%q", c.id)}
			}
			return nil
		}, procs...)
	}

	// The lookback (5m) spans the whole test, so "empty now" means "never".
	requireEmpty(t, central, `{job="cluster-a-self", cluster_id="cluster-b"}`) // the forged value
	for _, c := range clusters {
		requireEmpty(t, central, fmt.Sprintf(`{cluster_id=%q, job!=%q}`, c.id, c.job))
	}
	requireEmpty(t, central, fmt.Sprintf(`{__name__=%q}`, refusedMetric))

	// Nothing lacks the cluster label except the central's own scrape series.
	v, err := promQuery(central, `{__name__=~".+", cluster_id=""}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range v {
		name := s.Metric["__name__"]
		if s.Metric["job"] != "federate" || (name != "up" && !strings.HasPrefix(name, "scrape_")) {
			t.Errorf("series without cluster_id: %v", s)
		}
	}

	// fedgate counted the overwrite of cluster-a's forged label.
	eventually(t, 10*time.Second, "fedgate_cluster_label_overwrites_total > 0", func() error {
		n, err := scrapeValue("http://"+fg.internal+"/metrics", "fedgate_cluster_label_overwrites_total")
		if err == nil && n <= 0 {
			err = fmt.Errorf("value %v", n)
		}
		return err
	}, fg.process)

	// The GC runs at fedgate's default GOGC unless the environment sets one.
	if _, set := os.LookupEnv("GOGC"); !set {
		if v, err := scrapeValue("http://"+fg.internal+"/metrics", "go_gc_gogc_percent"); err != nil || v != defaultGCPercent {
			t.Errorf("go_gc_gogc_percent = %v (%v), want %d", v, err, defaultGCPercent)
		}
	}
}

// checkRefused asserts that pushes without valid credentials get 401.
func checkRefused(t *testing.T, writeURL string, body []byte) {
	t.Helper()
	cases := []struct {
		name string
		auth func(*http.Request)
	}{
		{"no credentials", func(*http.Request) {}},
		{"wrong bearer token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong-token") }},
		{"basic auth, wrong password", func(r *http.Request) { r.SetBasicAuth("cluster-b", "wrong-token") }},
		{"basic auth, another tenant's token", func(r *http.Request) { r.SetBasicAuth("cluster-a", clusters[1].token) }},
	}
	for _, c := range cases {
		req := newWriteRequest(t, writeURL, body)
		c.auth(req)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", c.name, resp.StatusCode)
		}
	}
}

// encodeWriteRequest returns a remote-write 1.0 body, a snappy-compressed
// prometheus.WriteRequest, with one sample of the named series.
func encodeWriteRequest(name string) []byte {
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: name}, {Name: "job", Value: "e2e"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: time.Now().UnixMilli()}},
	}}}
	b, err := wr.Marshal()
	if err != nil {
		panic(err) // a fixed, valid message cannot fail to marshal
	}
	return snappy.Encode(nil, b)
}

// newWriteRequest builds a remote-write 1.0 POST as Prometheus sends it.
func newWriteRequest(t *testing.T, writeURL string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, writeURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	return req
}

// requireEmpty fails the test unless query returns no series.
func requireEmpty(t *testing.T, base, query string) {
	t.Helper()
	v, err := promQuery(base, query)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) > 0 {
		t.Errorf("query %s: want no series, got %s", query, summary(v))
	}
}

// scrapeValue returns the sum of all samples of metric in a text exposition.
func scrapeValue(u, metric string) (float64, error) {
	code, body, err := get(u)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET %s: status %d", u, code)
	}
	var sum float64
	found := false
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, metric)
		if !ok || (!strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{")) {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			return 0, fmt.Errorf("malformed line %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("line %q: %w", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("%s not in %s", metric, u)
	}
	return sum, nil
}

func TestGracefulShutdownSIGTERM(t *testing.T) {
	skipIfShort(t)
	fg := startFedgate(t)

	// An in-flight push: the handler is reading the body (it asked for it with
	// "100 Continue") when SIGTERM arrives; the rest of the body follows once
	// fedgate has started shutting down.
	body := encodeWriteRequest("fedgate_e2e_inflight")
	conn, err := net.Dial("tcp", fg.public)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/v1/write HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"+
		"X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n",
		fg.public, clusters[0].token, len(body))
	answers := bufio.NewReader(conn)
	resp, err := http.ReadResponse(answers, nil)
	if err != nil {
		t.Fatalf("push before SIGTERM: %v", err)
	}
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("push before SIGTERM: status %d, want 100 Continue", resp.StatusCode)
	}
	half := len(body) / 2
	if _, err := conn.Write(body[:half]); err != nil {
		t.Fatal(err)
	}

	if err := fg.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "fedgate stops reporting ready after SIGTERM", func() error {
		if code, _, err := get("http://" + fg.public + "/-/ready"); err == nil && code == http.StatusOK {
			return errors.New("/-/ready still answers 200")
		}
		return nil
	})

	if _, err := conn.Write(body[half:]); err != nil {
		t.Fatalf("in-flight push cut off by shutdown: %v", err)
	}
	resp, err = http.ReadResponse(answers, nil)
	if err != nil {
		t.Fatalf("in-flight push got no answer: %v", err)
	}
	resp.Body.Close()
	// 204: durable before exit; 503: refused as "shutting down", retried by the sender.
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("in-flight push: status %d, want 204 or 503", resp.StatusCode)
	}
	t.Logf("in-flight push answered %d during shutdown", resp.StatusCode)

	if !fg.waitExit(15 * time.Second) {
		t.Fatal("fedgate still running 15s after SIGTERM")
	}
	if code := fg.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("fedgate exited with code %d (%v), want 0", code, fg.err)
	}
}
