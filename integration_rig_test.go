package main

// The ring rig: fedgate processes sharing one member list, and the
// helpers the integration tests drive them with.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/golang/snappy"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
)

const (
	ringPeerSecret     = "integration-peer-secret\n"
	ringForwardTimeout = "5s"
	ringWait           = 20 * time.Second // for one process or one condition

	// integrationCentralConfig is centralConfig with several targets.
	integrationCentralConfig = `global:
  scrape_interval: 1s
scrape_configs:
  - job_name: federate
    honor_labels: true
    metrics_path: /federate
    params:
      'match[]': ['{__name__=~".+"}']
    static_configs:
      - targets: [{{targets}}]
`
)

// jumpOwner is the contract's owner of tenant among n members: the index of
// its member in the listed order.
func jumpOwner(tenant string, n int) int {
	key := xxhash.Sum64String(tenant)
	b, j := int64(-1), int64(0)
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

type ringTenant struct{ id, token string }

// pickTenants walks the names prefix-0, prefix-1, ... and keeps the first
// want[i] that a ring of len(want) members gives to member i: the result is
// indexed by owner.
func pickTenants(prefix string, want ...int) [][]ringTenant {
	by := make([][]ringTenant, len(want))
	left := 0
	for _, n := range want {
		left += n
	}
	for i := 0; left > 0; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if o := jumpOwner(id, len(want)); len(by[o]) < want[o] {
			by[o] = append(by[o], ringTenant{id: id, token: "token-" + id})
			left--
		}
	}
	return by
}

// ringNode is one fedgate instance: its name, listeners and storage stay
// the same across restarts.
type ringNode struct {
	name             string
	public, internal string
	storage          string
	proc             *process
	runs             int
}

// ringRig is a set of fedgate instances sharing a tenant list and a peer
// secret.
type ringRig struct {
	t       *testing.T
	dir     string // config files and peer.key
	tenants []ringTenant
	nodes   []*ringNode
	client  *http.Client
}

func newRingRig(t *testing.T, size int, tenants []ringTenant) *ringRig {
	r := &ringRig{t: t, dir: t.TempDir(), tenants: tenants, client: &http.Client{Timeout: 15 * time.Second}}
	writeFile(t, r.dir, "peer.key", ringPeerSecret)
	for i := range size {
		r.nodes = append(r.nodes, &ringNode{name: fmt.Sprintf("gw-%d", i),
			public: freeAddr(t), internal: freeAddr(t), storage: t.TempDir()})
	}
	t.Cleanup(r.client.CloseIdleConnections)
	return r
}

// config is a fedgate config with the rig's tenants and a ring of members
// (in that order) in which this instance is self.
func (r *ringRig) config(self string, members []*ringNode) string {
	var b strings.Builder
	b.WriteString("cluster_label: cluster_id\ntenants:\n")
	for _, tn := range r.tenants {
		fmt.Fprintf(&b, "  - {id: %s, token: %s}\n", tn.id, tn.token)
	}
	b.WriteString("storage:\n  retention: 1h\nring:\n  self: " + self + "\n  members:\n")
	for _, m := range members {
		fmt.Fprintf(&b, "    - {name: %s, url: 'http://%s'}\n", m.name, m.internal)
	}
	b.WriteString("  secret_file: peer.key\n  forward_timeout: " + ringForwardTimeout + "\n")
	return b.String()
}

// start starts n as self in a ring of members (which need not hold n) and
// waits until it is ready.
func (r *ringRig) start(n *ringNode, members []*ringNode) {
	r.t.Helper()
	cfg := writeFile(r.t, r.dir, fmt.Sprintf("%s-run%d.yml", n.name, n.runs+1), r.config(n.name, members))
	r.launch(n, cfg)
	r.waitReady(n)
}

// launch starts n on the config file cfg, extra flags appended.
func (r *ringRig) launch(n *ringNode, cfg string, extra ...string) {
	r.t.Helper()
	n.runs++
	args := []string{
		"--config.file=" + cfg,
		"--storage.path=" + n.storage,
		"--web.listen-address=" + n.public,
		"--web.internal-listen-address=" + n.internal,
		"--log.level=debug",
	}
	n.proc = startProcess(r.t, fmt.Sprintf("%s-run%d", n.name, n.runs), fedgateBin, append(args, extra...)...)
}

func (r *ringRig) waitReady(n *ringNode) {
	r.t.Helper()
	waitHTTP200(r.t, "http://"+n.public+"/-/ready", ringWait, n.proc)
}

// stop stops n with SIGTERM and insists on a clean exit.
func (r *ringRig) stop(n *ringNode) {
	r.t.Helper()
	if err := n.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatal(err)
	}
	if !n.proc.waitExit(15 * time.Second) {
		r.t.Fatalf("%s still running 15s after SIGTERM", n.proc.name)
	}
	if code := n.proc.cmd.ProcessState.ExitCode(); code != 0 {
		r.t.Fatalf("%s exited with code %d after SIGTERM, want 0", n.proc.name, code)
	}
}

// push sends series to n as tenant: a status means fedgate answered.
func (r *ringRig) push(n *ringNode, tenant ringTenant, series ...prompb.TimeSeries) (int, string, error) {
	raw, err := (&prompb.WriteRequest{Timeseries: series}).Marshal()
	if err != nil {
		return 0, "", err
	}
	req := newWriteRequest(r.t, "http://"+n.public+"/api/v1/write", snappy.Encode(nil, raw))
	req.Header.Set("Authorization", "Bearer "+tenant.token)
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(msg)), nil
}

// mustPush pushes and insists on 204.
func (r *ringRig) mustPush(n *ringNode, tenant ringTenant, series ...prompb.TimeSeries) {
	r.t.Helper()
	code, msg, err := r.push(n, tenant, series...)
	if err != nil || code != http.StatusNoContent {
		r.t.Fatalf("push of tenant %s to %s: status %d (%v): %s", tenant.id, n.name, code, err, msg)
	}
}

// served returns every series n's /federate serves, by seriesKey.
func (r *ringRig) served(n *ringNode) (map[string]servedSample, error) {
	s, err := scrapeFederate("http://" + n.internal + "/federate?" + url.Values{"match[]": {`{__name__=~".+"}`}}.Encode())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.name, err)
	}
	return s, nil
}

// byTenant splits what /federate served by cluster label.
func byTenant(served map[string]servedSample) map[string]map[string]servedSample {
	out := map[string]map[string]servedSample{}
	for key, s := range served {
		id, _, _ := strings.Cut(key, "|")
		if out[id] == nil {
			out[id] = map[string]servedSample{}
		}
		out[id][key] = s
	}
	return out
}

// counter returns the sum of metric's series on n whose label has value
// ("" label: all of them); 0 when none is exposed yet.
func (r *ringRig) counter(n *ringNode, metric, label, value string) (float64, error) {
	code, body, err := get("http://" + n.internal + "/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("%s /metrics: status %d", n.name, code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%s /metrics: %w", n.name, err)
	}
	var sum float64
	for _, m := range fams[metric].GetMetric() {
		match := label == ""
		for _, l := range m.GetLabel() {
			match = match || (l.GetName() == label && l.GetValue() == value)
		}
		if match {
			sum += m.GetCounter().GetValue() + m.GetUntyped().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum, nil
}

// sortedKey is seriesKey of labels in any order (scrapeFederate sorts them).
func sortedKey(cluster string, ls []prompb.Label) string {
	ls = slices.Clone(ls)
	slices.SortFunc(ls, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) })
	return seriesKey(cluster, ls)
}
