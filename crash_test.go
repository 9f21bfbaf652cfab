package main

// The crash test: a real fedgate under concurrent multi-tenant load is
// killed with SIGKILL several times and restarted on the same storage path.
// The invariant is the WAL's contract (wal/doc.go): a sample answered 2xx is
// never lost, and nothing that was not sent is ever served.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/wal"
)

const (
	crashTenants          = 4
	crashWritersPerTenant = 2
	crashSeriesPerWriter  = 200
	crashKills            = 8
	// Each round kills fedgate after a random number of acknowledged
	// requests in [crashMinAcks, crashMinAcks+crashSpreadAcks).
	crashMinAcks    = 200
	crashSpreadAcks = 3000
	// crashCheckpointInterval is storage.checkpoint_interval: short, so that
	// kills land before, during and after checkpoints.
	crashCheckpointInterval = "100ms"
	crashWaitTimeout        = 20 * time.Second
	crashProbeMetric        = "crash_probe"
)

func TestCrashNoAcknowledgedSampleLost(t *testing.T) {
	skipIfShort(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	c := newCrashRun(t, seed)
	c.killRounds(rand.New(rand.NewPCG(seed, 0)))

	c.stopWriters()
	t.Logf("load stopped after %d acknowledged requests; wal: %s", c.acked.Load(), c.walFiles())
	snap := c.snapshot()
	served := c.verify("after the last restart", snap)
	t.Logf("%d acknowledged requests, %d series acknowledged, %d served; startup writes answered 503 (not ready): %d, 204 before /-/ready: %d",
		c.acked.Load(), snap.ackedSeries(), len(served), len(c.probe.notReady), c.probe.earlyAcks)
	if !c.sawCheckpoint {
		t.Errorf("storage.checkpoint_interval is %s, but no checkpoint was on disk at any kill", crashCheckpointInterval)
	}
	c.cleanRestart(served)
}

// killRounds starts fedgate and the writers, then crashKills times kills
// fedgate with SIGKILL once a random number of requests more have been
// acknowledged, restarts it on the same storage path and verifies what
// replay rebuilt. It returns under load, with fedgate running.
func (c *crashRun) killRounds(rng *rand.Rand) {
	t := c.t
	var prev *crashGen
	for round := 0; ; round++ {
		g := c.newGen(round)
		c.cur.Store(g)
		if prev != nil {
			close(prev.dead) // writers that lost prev move on to g
		} else {
			c.startWriters()
		}
		c.start(g)
		c.waitReady(g)
		if round > 0 {
			// Writers are parked until g.ready: what is served now is what
			// replay rebuilt.
			c.verify(fmt.Sprintf("after kill %d", round), c.snapshot())
		}
		g.killAt = c.acked.Load() + crashMinAcks + rng.Int64N(crashSpreadAcks)
		close(g.ready)
		c.waitFired(g)
		if round == crashKills {
			return
		}
		g.killed.Store(true)
		if err := g.proc.cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		<-g.proc.done
		t.Logf("round %d: SIGKILL after %d acknowledged requests; wal: %s", round, c.acked.Load(), c.walFiles())
		prev = g
	}
}

// cleanRestart stops fedgate with SIGTERM, starts it again and checks that
// it serves exactly what it served before (the probe series aside, which
// waitReady writes again).
func (c *crashRun) cleanRestart(before map[string]servedSample) {
	t := c.t
	last := c.cur.Load()
	if err := last.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !last.proc.waitExit(15 * time.Second) {
		t.Fatal("fedgate still running 15s after SIGTERM")
	}
	if code := last.proc.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("fedgate exited with code %d after SIGTERM, want 0", code)
	}
	g := c.newGen(crashKills + 1)
	c.cur.Store(g)
	c.start(g)
	c.waitReady(g)
	after := c.verify("after a clean restart", c.snapshot())
	delete(before, c.probeKey())
	delete(after, c.probeKey())
	for k, s := range before {
		if a, ok := after[k]; !ok || a != s {
			t.Errorf("series %s: served %+v before a clean restart, %+v (present: %v) after", k, s, a, ok)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("series %s: served after a clean restart only", k)
		}
	}
}

// crashRun is the state of one crash test: the writers, the current
// fedgate generation and the probe that writes while fedgate replays.
type crashRun struct {
	t         *testing.T
	storage   string // --storage.path, the same for every generation
	configDir string
	base      int64 // timestamps are base + small offsets, in ms
	client    *http.Client

	cur     atomic.Pointer[crashGen]
	acked   atomic.Int64 // requests answered 204, all writers
	writers []*crashWriter
	index   map[string]seriesRef // series key to its writer and slot
	wg      sync.WaitGroup
	stop    chan struct{}
	stopped atomic.Bool

	probe         crashProbe // used by the test goroutine only
	sawCheckpoint bool
}

// crashGen is one fedgate process on the shared storage path.
type crashGen struct {
	n                int
	proc             *process
	public, internal string
	killAt           int64         // acked count at which fired closes; set before ready
	ready            chan struct{} // closed when writers may write to it
	fired            chan struct{} // closed once acked reaches killAt
	fireOnce         sync.Once
	killed           atomic.Bool   // set just before SIGKILL
	dead             chan struct{} // closed once the next generation is current
}

func (g *crashGen) fire() { g.fireOnce.Do(func() { close(g.fired) }) }

// crashProbe writes one series of tenant 0 while fedgate starts. Its
// timestamps increase over the whole test.
type crashProbe struct {
	k           int64
	acked, sent int64
	notReady    map[int64]bool // timestamps answered 503 "not ready"
	earlyAcks   int            // answered 204 before /-/ready said 200
}

func newCrashRun(t *testing.T, seed uint64) *crashRun {
	c := &crashRun{
		t:         t,
		storage:   t.TempDir(),
		configDir: t.TempDir(),
		base:      time.Now().UnixMilli(),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: crashTenants * crashWritersPerTenant,
		}},
		index: make(map[string]seriesRef),
		stop:  make(chan struct{}),
		probe: crashProbe{notReady: make(map[int64]bool)},
	}
	for tenant := range crashTenants {
		for shard := range crashWritersPerTenant {
			w := newCrashWriter(tenant, shard, seed)
			for j, ls := range w.labels {
				c.index[seriesKey(crashTenantID(tenant), ls)] = seriesRef{w: w, j: j}
			}
			c.writers = append(c.writers, w)
		}
	}
	t.Cleanup(func() {
		c.stopWriters()
		c.client.CloseIdleConnections()
	})
	return c
}

func crashTenantID(i int) string    { return fmt.Sprintf("crash-%d", i) }
func crashTenantToken(i int) string { return fmt.Sprintf("crash-token-%d", i) }

// config is the fedgate config of one generation.
func (c *crashRun) config(internal string) string {
	var b strings.Builder
	b.WriteString("cluster_label: cluster_id\ntenants:\n")
	for i := range crashTenants {
		fmt.Fprintf(&b, "  - {id: %s, token: %s}\n", crashTenantID(i), crashTenantToken(i))
	}
	// Nothing expires during the test.
	b.WriteString("storage:\n  retention: 1h\n  checkpoint_interval: " + crashCheckpointInterval + "\n")
	fmt.Fprintf(&b, "ring:\n  self: gw-0\n  members:\n    - {name: gw-0, url: 'http://%s'}\n", internal)
	return b.String()
}

// newGen picks the listeners of the next generation. Fresh ports each time,
// so that no client connection left from a killed process can hold one.
func (c *crashRun) newGen(n int) *crashGen {
	return &crashGen{n: n, public: freeAddr(c.t), internal: freeAddr(c.t),
		ready: make(chan struct{}), fired: make(chan struct{}), dead: make(chan struct{})}
}

func (c *crashRun) start(g *crashGen) {
	cfg := writeFile(c.t, c.configDir, fmt.Sprintf("fedgate-%d.yml", g.n), c.config(g.internal))
	g.proc = startProcess(c.t, fmt.Sprintf("fedgate-%d", g.n), fedgateBin,
		"--config.file="+cfg,
		"--storage.path="+c.storage,
		"--web.listen-address="+g.public,
		"--web.internal-listen-address="+g.internal,
		"--log.level=debug",
	)
}

// waitReady probes g until /-/ready answers 200. Each probe first sends a
// write: while the log replays it must be answered 503, never acknowledged
// and never served. Once ready, one more probe write must be acknowledged.
func (c *crashRun) waitReady(g *crashGen) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(crashWaitTimeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if done, err := g.proc.exited(); done {
			t.Fatalf("%s exited (%v) before it was ready", g.proc.name, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v", g.proc.name, crashWaitTimeout)
		}
		code, msg, err := c.sendProbe(g)
		if err != nil { // not listening yet
			<-tick.C
			continue
		}
		rcode, _, rerr := get("http://" + g.public + "/-/ready")
		switch {
		case code == http.StatusNoContent && rerr == nil && rcode != http.StatusOK:
			c.probe.earlyAcks++ // replay done, /-/ready not yet flipped
		case c.probe.notReady[c.probe.sent]:
		case code != http.StatusNoContent:
			t.Errorf("%s: write while starting: status %d: %s", g.proc.name, code, msg)
		}
		if rerr == nil && rcode == http.StatusOK {
			break
		}
	}
	if code, msg, err := c.sendProbe(g); err != nil || code != http.StatusNoContent {
		t.Fatalf("%s: write once ready: status %d (%v): %s", g.proc.name, code, err, msg)
	}
}

// sendProbe sends the probe series with its next timestamp and records the
// answer.
func (c *crashRun) sendProbe(g *crashGen) (int, string, error) {
	p := &c.probe
	p.k++
	ts := c.base + p.k
	p.sent = ts
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: crashProbeMetric}},
		Samples: []prompb.Sample{{Timestamp: ts, Value: float64(p.k)}},
	}}}
	code, msg, err := c.post(g.public, crashTenantToken(0), wr)
	switch {
	case err != nil:
	case code == http.StatusNoContent:
		p.acked = ts
	case code == http.StatusServiceUnavailable && strings.Contains(msg, wal.ErrNotReady.Error()):
		p.notReady[ts] = true
	}
	return code, msg, err
}

// post sends one remote-write 1.0 request. A status means fedgate answered.
func (c *crashRun) post(addr, token string, wr *prompb.WriteRequest) (int, string, error) {
	raw, err := wr.Marshal()
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096)) // the status is the answer
	return resp.StatusCode, string(msg), nil
}

// waitFired waits until the writers have had killAt requests acknowledged.
func (c *crashRun) waitFired(g *crashGen) {
	select {
	case <-g.fired:
	case <-g.proc.done:
		c.t.Fatalf("%s exited (%v) under load", g.proc.name, g.proc.err)
	case <-time.After(crashWaitTimeout):
		c.t.Fatalf("%s: %d of %d requests acknowledged after %v", g.proc.name, c.acked.Load(), g.killAt, crashWaitTimeout)
	}
}

// startWriters starts the writers; they wait for the current generation.
func (c *crashRun) startWriters() {
	for _, w := range c.writers {
		c.wg.Add(1)
		go w.run(c)
	}
}

func (c *crashRun) stopWriters() {
	if c.stopped.CompareAndSwap(false, true) {
		close(c.stop)
	}
	c.wg.Wait()
}

// walFiles lists the log directory and notes whether a checkpoint is there.
func (c *crashRun) walFiles() string {
	entries, err := os.ReadDir(filepath.Join(c.storage, "wal"))
	if err != nil {
		return err.Error()
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "checkpoint.") && !strings.HasSuffix(name, ".tmp") {
			c.sawCheckpoint = true
		}
		names = append(names, name)
	}
	return strings.Join(names, " ")
}

// crashWriter owns a fixed shard of one tenant's series and sends each of
// them strictly increasing timestamps: request k carries base+2k (and, for
// some series, also base+2k-1, in either order).
type crashWriter struct {
	tenant, shard int
	labels        [][]prompb.Label
	rng           *rand.Rand

	mu    sync.Mutex // guards acked and sent, which the test goroutine snapshots
	acked []int64    // per series, the newest timestamp answered 204; 0 for none
	sent  []int64    // per series, the newest timestamp sent, answered or not
}

type seriesRef struct {
	w *crashWriter
	j int
}

func newCrashWriter(tenant, shard int, seed uint64) *crashWriter {
	w := &crashWriter{tenant: tenant, shard: shard,
		rng:   rand.New(rand.NewPCG(seed, uint64(tenant*crashWritersPerTenant+shard+1))),
		acked: make([]int64, crashSeriesPerWriter), sent: make([]int64, crashSeriesPerWriter)}
	for j := range crashSeriesPerWriter {
		// The same label sets in every tenant: only the stamped cluster
		// label tells them apart.
		w.labels = append(w.labels, []prompb.Label{
			{Name: "__name__", Value: fmt.Sprintf("crash_metric_%d", j%7)},
			{Name: "job", Value: "crash"},
			{Name: "series", Value: fmt.Sprint(j)},
			{Name: "shard", Value: fmt.Sprint(shard)},
		})
	}
	return w
}

// value is what series j of w carries at t: unique per series and time, so
// that a served sample names the request it came from.
func (w *crashWriter) value(c *crashRun, j int, t int64) float64 {
	g := (w.tenant*crashWritersPerTenant+w.shard)*crashSeriesPerWriter + j
	return float64((t-c.base)*8192 + int64(g))
}

// request builds request k: a random run of the writer's series.
func (w *crashWriter) request(c *crashRun, k int64) (*prompb.WriteRequest, []int, int64) {
	t := c.base + 2*k
	n, first := 1+w.rng.IntN(crashSeriesPerWriter), w.rng.IntN(crashSeriesPerWriter)
	wr := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, n)}
	idx := make([]int, 0, n)
	for i := range n {
		j := (first + i) % crashSeriesPerWriter
		samples := []prompb.Sample{{Timestamp: t, Value: w.value(c, j, t)}}
		if w.rng.IntN(4) == 0 {
			older := prompb.Sample{Timestamp: t - 1, Value: w.value(c, j, t-1)}
			if w.rng.IntN(2) == 0 {
				samples = []prompb.Sample{older, samples[0]}
			} else {
				samples = append(samples, older)
			}
		}
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{Labels: w.labels[j], Samples: samples})
		idx = append(idx, j)
	}
	return wr, idx, t
}

func (w *crashWriter) run(c *crashRun) {
	defer c.wg.Done()
	for k := int64(1); ; k++ {
		g := c.cur.Load()
		select {
		case <-g.ready:
		case <-c.stop:
			return
		}
		select {
		case <-c.stop:
			return
		default:
		}
		wr, idx, t := w.request(c, k)
		w.mu.Lock()
		for _, j := range idx {
			w.sent[j] = t
		}
		w.mu.Unlock()
		code, msg, err := c.post(g.public, crashTenantToken(w.tenant), wr)
		switch {
		case err != nil:
			if !g.killed.Load() && !c.stopped.Load() {
				c.t.Errorf("tenant %d writer %d: %s alive, yet: %v", w.tenant, w.shard, g.proc.name, err)
			}
			select { // the process is gone: wait for the next one
			case <-g.dead:
			case <-c.stop:
				return
			}
		case code == http.StatusNoContent:
			w.mu.Lock()
			for _, j := range idx {
				w.acked[j] = t
			}
			w.mu.Unlock()
			if n := c.acked.Add(1); n >= g.killAt {
				g.fire()
			}
		default:
			c.t.Errorf("tenant %d writer %d: status %d: %s", w.tenant, w.shard, code, msg)
		}
	}
}

// crashSnapshot is what the writers and the probe had sent and had
// acknowledged at one moment.
type crashSnapshot struct {
	acked, sent [][]int64 // by writer, then series
	probe       crashProbe
}

func (c *crashRun) snapshot() crashSnapshot {
	var s crashSnapshot
	for _, w := range c.writers {
		w.mu.Lock()
		s.acked = append(s.acked, slices.Clone(w.acked))
		s.sent = append(s.sent, slices.Clone(w.sent))
		w.mu.Unlock()
	}
	s.probe = c.probe
	return s
}

func (s crashSnapshot) ackedSeries() int {
	n := 0
	for _, a := range s.acked {
		for _, t := range a {
			if t > 0 {
				n++
			}
		}
	}
	return n
}

type servedSample struct {
	T int64
	V float64
}

// verify scrapes /federate and checks every series against snap: a series
// acknowledged at T is served at T or later; nothing is served that was not
// sent, or that was only answered 503 "not ready"; a served value is the
// one sent at its timestamp. It returns what was served.
func (c *crashRun) verify(when string, snap crashSnapshot) map[string]servedSample {
	t := c.t
	t.Helper()
	g := c.cur.Load()
	served, err := scrapeFederate("http://" + g.internal + "/federate?" + url.Values{"match[]": {`{__name__=~".+"}`}}.Encode())
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	writerIdx := make(map[*crashWriter]int, len(c.writers))
	for i, w := range c.writers {
		writerIdx[w] = i
	}
	lost := 0
	for key, s := range served {
		if key == c.probeKey() {
			c.checkProbe(when, snap.probe, s)
			continue
		}
		ref, ok := c.index[key]
		if !ok {
			t.Errorf("%s: served series %s was never sent", when, key)
			continue
		}
		i := writerIdx[ref.w]
		acked, sent := snap.acked[i][ref.j], snap.sent[i][ref.j]
		switch {
		case s.T < acked:
			lost++
			if lost <= 10 {
				t.Errorf("%s: series %s served at %d, older than its acknowledged sample at %d", when, key, s.T, acked)
			}
		case s.T > sent:
			t.Errorf("%s: series %s served at %d, newer than anything sent (%d)", when, key, s.T, sent)
		case s.V != ref.w.value(c, ref.j, s.T):
			t.Errorf("%s: series %s at %d: served %v, sent %v", when, key, s.T, s.V, ref.w.value(c, ref.j, s.T))
		}
	}
	for key, ref := range c.index {
		if _, ok := served[key]; !ok && snap.acked[writerIdx[ref.w]][ref.j] > 0 {
			lost++
			if lost <= 10 {
				t.Errorf("%s: series %s acknowledged at %d is not served", when, key, snap.acked[writerIdx[ref.w]][ref.j])
			}
		}
	}
	if lost > 0 {
		t.Errorf("%s: %d acknowledged series lost or older than acknowledged", when, lost)
	}
	if snap.probe.acked > 0 {
		if _, ok := served[c.probeKey()]; !ok {
			t.Errorf("%s: probe series acknowledged at %d is not served", when, snap.probe.acked)
		}
	}
	return served
}

func (c *crashRun) checkProbe(when string, p crashProbe, s servedSample) {
	switch {
	case s.T < p.acked:
		c.t.Errorf("%s: probe served at %d, older than its acknowledged sample at %d", when, s.T, p.acked)
	case s.T > p.sent:
		c.t.Errorf("%s: probe served at %d, newer than anything sent (%d)", when, s.T, p.sent)
	case p.notReady[s.T]:
		c.t.Errorf("%s: probe served at %d, a write answered 503 while fedgate replayed", when, s.T)
	case s.V != float64(s.T-c.base):
		c.t.Errorf("%s: probe at %d: served %v, sent %v", when, s.T, s.V, s.T-c.base)
	}
}

func (c *crashRun) probeKey() string {
	return seriesKey(crashTenantID(0), []prompb.Label{{Name: "__name__", Value: crashProbeMetric}})
}

// seriesKey names a series by its cluster label and its labels as sent.
func seriesKey(cluster string, ls []prompb.Label) string {
	var b strings.Builder
	b.WriteString(cluster)
	for _, l := range ls {
		b.WriteString("|" + l.Name + "=" + l.Value)
	}
	return b.String()
}

// scrapeFederate returns every series /federate serves, by seriesKey.
func scrapeFederate(u string) (map[string]servedSample, error) {
	code, body, err := get(u)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d: %.200s", u, code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parse /federate: %w", err)
	}
	served := make(map[string]servedSample)
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			ls := []prompb.Label{{Name: "__name__", Value: name}}
			cluster := ""
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "cluster_id":
					cluster = l.GetValue()
				case "instance": // added empty by /federate
				default:
					ls = append(ls, prompb.Label{Name: l.GetName(), Value: l.GetValue()})
				}
			}
			slices.SortFunc(ls, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) })
			key := seriesKey(cluster, ls)
			if _, dup := served[key]; dup {
				return nil, fmt.Errorf("series %s served twice", key)
			}
			served[key] = servedSample{T: m.GetTimestampMs(), V: m.GetUntyped().GetValue()}
		}
	}
	return served, nil
}
