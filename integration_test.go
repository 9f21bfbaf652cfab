package main

// Integration tests of the ring: several fedgate processes with one member
// list, real Prometheus Agents and Go clients pushing to instances that do
// not own their tenant, a central Prometheus scraping every instance, an
// owner killed under load, and members added and removed. Ownership is
// computed here from the contract (jump(xxhash64(tenant), len(members)) over
// the listed order), never asked of fedgate's own ring package.
//
// They run with `make test-integration` (-run '^TestIntegration') and are
// skipped under -short.

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// TestIntegrationRing: three instances, six tenants, two owned by each.
// The first of each owner's tenants pushes from a real Prometheus Agent to
// the next instance, the second from Go to the one after: every instance
// forwards to both others. A central Prometheus scrapes all three.
func TestIntegrationRing(t *testing.T) {
	skipIfShort(t)
	requirePeers(t)
	byOwner := pickTenants("ring", 2, 2, 2)
	r := newRingRig(t, 3, slices.Concat(byOwner...))

	// One config for all three, as in a StatefulSet: --ring.self names
	// each instance, overriding ring.self.
	cfg := writeFile(t, r.dir, "fedgate.yml", r.config("gw-0", r.nodes))
	var procs []*process
	for _, n := range r.nodes {
		r.launch(n, cfg, "--ring.self="+n.name)
		procs = append(procs, n.proc)
	}
	for _, n := range r.nodes {
		r.waitReady(n)
	}
	now := time.Now().UnixMilli()
	for o, ts := range byOwner {
		agent, direct := ts[0], ts[1]
		addr := freeAddr(t)
		procs = append(procs, startPrometheus(t, agent.id+"-agent", addr, fill(agentConfig, "job", agent.id+"-self",
			"self", addr, "fedgate", r.nodes[(o+1)%3].public, "token", agent.token), true))
		r.mustPush(r.nodes[(o+2)%3], direct, directSeries(now)...)
	}
	var targets []string
	for _, n := range r.nodes {
		targets = append(targets, "'"+n.internal+"'")
	}
	centralAddr := freeAddr(t)
	procs = append(procs, startPrometheus(t, "central-prometheus", centralAddr,
		fill(integrationCentralConfig, "targets", strings.Join(targets, ", ")), false))

	eventually(t, 40*time.Second, "every tenant served by its owner only",
		func() error { return r.servedByOwnerOnly(byOwner) }, procs...)
	checkCentral(t, "http://"+centralAddr, byOwner, procs)

	// The peer endpoint is served on the internal listener only: on the
	// public one it does not exist, even with the right secret.
	for _, n := range r.nodes {
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.public+"/internal/v1/append", strings.NewReader("FGB1"))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(ringPeerSecret))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: POST /internal/v1/append on the public listener answered %d", n.name, resp.StatusCode)
		}
	}

	// Every instance forwarded to both others, counted by peer, and stored
	// nothing itself: it was sent only tenants it does not own.
	for i, n := range r.nodes {
		for o, owner := range r.nodes {
			if o == i {
				continue
			}
			for metric, label := range map[string]string{"fedgate_forwarded_bytes_total": "peer", "fedgate_routed_samples_total": "destination"} {
				if v, err := r.counter(n, metric, label, owner.name); err != nil || v <= 0 {
					t.Errorf("%s: %s{%s=%q} = %v (%v), want > 0", n.name, metric, label, owner.name, v, err)
				}
			}
		}
		if v, err := r.counter(n, "fedgate_routed_samples_total", "destination", "local"); err != nil || v != 0 {
			t.Errorf("%s: fedgate_routed_samples_total{destination=\"local\"} = %v (%v), want 0", n.name, v, err)
		}
	}
	// The Agents keep pushing: their forwarders' counters keep growing.
	for o, owner := range r.nodes {
		n := r.nodes[(o+1)%3]
		before, err := r.counter(n, "fedgate_routed_samples_total", "destination", owner.name)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, fmt.Sprintf("%s forwards more to %s", n.name, owner.name), func() error {
			v, err := r.counter(n, "fedgate_routed_samples_total", "destination", owner.name)
			if err == nil && v <= before {
				err = fmt.Errorf("fedgate_routed_samples_total{destination=%q} still %v", owner.name, v)
			}
			return err
		}, procs...)
	}
}

// directSeries are the five series TestIntegrationRing pushes from Go.
func directSeries(ts int64) []prompb.TimeSeries {
	var ss []prompb.TimeSeries
	for i := range 5 {
		ss = append(ss, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "integration_direct"}, {Name: "job", Value: "direct"}, {Name: "series", Value: fmt.Sprint(i)}},
			Samples: []prompb.Sample{{Timestamp: ts, Value: float64(i + 1)}},
		})
	}
	return ss
}

// servedByOwnerOnly checks that every instance serves its own tenants
// (byOwner[i] are gw-i's: an Agent's, whose up series must be there, then
// a Go client's with five series) and nothing of any other; the latter is
// final.
func (r *ringRig) servedByOwnerOnly(byOwner [][]ringTenant) error {
	var missing []string
	for i, n := range r.nodes {
		s, err := r.served(n)
		if err != nil {
			return err
		}
		held := byTenant(s)
		for o, ts := range byOwner {
			for _, tn := range ts {
				if o != i && len(held[tn.id]) > 0 {
					return final{fmt.Errorf("%s serves %d series of %s, owned by %s", n.name, len(held[tn.id]), tn.id, r.nodes[o].name)}
				}
			}
			delete(held, ts[0].id)
			delete(held, ts[1].id)
		}
		for id := range held {
			return final{fmt.Errorf("%s serves series with cluster_id %q, no tenant's", n.name, id)}
		}
		agent, direct := byOwner[i][0], byOwner[i][1]
		up := sortedKey(agent.id, []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: agent.id + "-self"}})
		if _, ok := s[up]; !ok {
			missing = append(missing, fmt.Sprintf("%s of %s on %s", up, agent.id, n.name))
		}
		if got := len(byTenant(s)[direct.id]); got != 5 {
			missing = append(missing, fmt.Sprintf("%d of 5 series of %s on %s", got, direct.id, n.name))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not yet served: %s", strings.Join(missing, ", "))
	}
	return nil
}

// checkCentral waits until the central Prometheus has every tenant of
// TestIntegrationRing, each under its own cluster label only.
func checkCentral(t *testing.T, central string, byOwner [][]ringTenant, procs []*process) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for _, ts := range byOwner {
		agent, direct := ts[0], ts[1]
		job := agent.id + "-self"
		waitQuery(t, central, fmt.Sprintf(`up{job=%q}`, job), time.Until(deadline), func(v []promSample) error {
			if len(v) == 0 {
				return errEmpty
			}
			for _, s := range v {
				if s.Metric["cluster_id"] != agent.id {
					return final{fmt.Errorf("want cluster_id=%q", agent.id)}
				}
				if s.value() != "1" {
					return errors.New("want up == 1")
				}
			}
			return nil
		}, procs...)
		waitQuery(t, central, fmt.Sprintf(`count by (cluster_id) ({job=%q})`, job), time.Until(deadline), func(v []promSample) error {
			if len(v) != 1 || v[0].Metric["cluster_id"] != agent.id {
				return fmt.Errorf("want exactly one row, with cluster_id=%q", agent.id)
			}
			return nil
		}, procs...)
		waitQuery(t, central, fmt.Sprintf(`integration_direct{cluster_id=%q}`, direct.id), time.Until(deadline), func(v []promSample) error {
			if len(v) != 5 {
				return errors.New("want 5 series")
			}
			for _, s := range v {
				i, _ := strconv.Atoi(s.Metric["series"])
				if want := fmt.Sprint(i + 1); s.value() != want {
					return final{fmt.Errorf("series %s: value %s, want %s", s.Metric["series"], s.value(), want)}
				}
			}
			return nil
		}, procs...)
		requireEmpty(t, central, fmt.Sprintf(`{cluster_id=~%q, job!~%q}`, agent.id+"|"+direct.id, job+"|direct"))
	}
	waitQuery(t, central, `up{job="federate"} == 1`, time.Until(deadline), func(v []promSample) error {
		if len(v) != 3 {
			return errors.New("want all three instances scraped successfully")
		}
		return nil
	}, procs...)
	requireEmpty(t, central, `{cluster_id="cluster-b"}`) // the value the Agents forge
}

// ackWriter pushes a fixed set of series of one tenant to one instance, one
// request at a time, with strictly increasing timestamps.
type ackWriter struct {
	tenant ringTenant
	via    *ringNode
	shard  int
	labels [][]prompb.Label

	mu          sync.Mutex // guards acked and sent
	acked, sent []int64    // per series: newest timestamp answered 204, newest sent

	acks        atomic.Int64
	unavailable [3]atomic.Int64 // 503s by loadPhase at the answer
}

// loadPhase is where the owner is in its kill and restart.
type loadPhase int32

const (
	ownerUp loadPhase = iota
	ownerDown
	ownerBack
)

const ackSeriesPerWriter = 40

// ackLoad is the concurrent load of TestIntegrationOwnerKilled.
type ackLoad struct {
	r       *ringRig
	base    int64
	writers []*ackWriter
	phase   atomic.Int32 // a loadPhase
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

// value is what series j carries at t: unique per series and time.
func (l *ackLoad) value(j int, t int64) float64 { return float64((t-l.base)*1024 + int64(j)) }

func (l *ackLoad) run(w *ackWriter) {
	defer l.wg.Done()
	tick := time.NewTicker(10 * time.Millisecond) // pacing, not waiting
	defer tick.Stop()
	for k := int64(1); ; k++ {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		t := l.base + k
		phase := loadPhase(l.phase.Load())
		var series []prompb.TimeSeries
		var idx []int
		for j, ls := range w.labels {
			// Once the owner is killed, odd series are never written
			// again: their newest acknowledgement is from before the kill.
			if phase != ownerUp && j%2 == 1 {
				continue
			}
			series = append(series, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Timestamp: t, Value: l.value(j, t)}}})
			idx = append(idx, j)
		}
		w.mu.Lock()
		for _, j := range idx {
			w.sent[j] = t
		}
		w.mu.Unlock()
		code, msg, err := l.r.push(w.via, w.tenant, series...)
		switch {
		case err != nil:
			l.r.t.Errorf("%s writer %d: %s is up, yet: %v", w.tenant.id, w.shard, w.via.name, err)
			return
		case code == http.StatusNoContent:
			w.mu.Lock()
			for _, j := range idx {
				w.acked[j] = t
			}
			w.mu.Unlock()
			w.acks.Add(1)
		case code == http.StatusServiceUnavailable:
			// Counted by the phase at the answer: the owner was killed
			// only after the phase left ownerUp.
			w.unavailable[l.phase.Load()].Add(1)
		default:
			l.r.t.Errorf("%s writer %d via %s: status %d: %s", w.tenant.id, w.shard, w.via.name, code, msg)
			return
		}
	}
}

func (l *ackLoad) halt() {
	l.stopped.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// waitAcks waits until every writer has had n more requests acknowledged
// than it had when called.
func (l *ackLoad) waitAcks(what string, n int64, watch ...*process) {
	from := make([]int64, len(l.writers))
	for i, w := range l.writers {
		from[i] = w.acks.Load()
	}
	eventually(l.r.t, ringWait, what, func() error {
		for i, w := range l.writers {
			if got := w.acks.Load() - from[i]; got < n {
				return fmt.Errorf("%s writer %d via %s: %d of %d", w.tenant.id, w.shard, w.via.name, got, n)
			}
		}
		return nil
	}, watch...)
}

// verify checks what owner's /federate serves of the load's tenants: every
// series acknowledged at T is served at T or later, never newer than sent,
// with the value sent at its timestamp. It returns the load's served series.
func (l *ackLoad) verify(when string, owner *ringNode) map[string]servedSample {
	t := l.r.t
	t.Helper()
	all, err := l.r.served(owner)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	served := map[string]servedSample{}
	held := byTenant(all)
	for _, w := range l.writers {
		maps.Copy(served, held[w.tenant.id])
	}
	known := map[string]bool{}
	bad := 0
	for _, w := range l.writers {
		w.mu.Lock()
		acked, sent := slices.Clone(w.acked), slices.Clone(w.sent)
		w.mu.Unlock()
		for j, ls := range w.labels {
			key := sortedKey(w.tenant.id, ls)
			known[key] = true
			s, ok := served[key]
			var problem string
			switch {
			case !ok && acked[j] > 0:
				problem = fmt.Sprintf("acknowledged at %d, not served", acked[j])
			case !ok:
			case s.T < acked[j]:
				problem = fmt.Sprintf("served at %d, older than its acknowledged sample at %d", s.T, acked[j])
			case s.T > sent[j]:
				problem = fmt.Sprintf("served at %d, newer than anything sent (%d)", s.T, sent[j])
			case s.V != l.value(j, s.T):
				problem = fmt.Sprintf("at %d: served %v, sent %v", s.T, s.V, l.value(j, s.T))
			}
			if problem != "" {
				if bad++; bad <= 10 {
					t.Errorf("%s: series %s %s", when, key, problem)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d series wrong", when, bad)
	}
	for key := range served {
		if !known[key] {
			t.Errorf("%s: served series %s was never sent", when, key)
		}
	}
	return served
}

// requireNoneServed fails unless n's /federate serves no series of tenants.
func (r *ringRig) requireNoneServed(when string, n *ringNode, tenants ...ringTenant) {
	r.t.Helper()
	s, err := r.served(n)
	if err != nil {
		r.t.Fatalf("%s: %v", when, err)
	}
	held := byTenant(s)
	for _, tn := range tenants {
		if len(held[tn.id]) > 0 {
			r.t.Errorf("%s: %s serves %d series of %s, which it does not own", when, n.name, len(held[tn.id]), tn.id)
		}
	}
}

// TestIntegrationOwnerKilled: concurrent writers push two tenants through
// the two instances that do not own them; the owner is killed with SIGKILL
// and restarted on the same storage and ports. Nothing acknowledged may be
// lost, and restarting a non-owner changes nothing.
func TestIntegrationOwnerKilled(t *testing.T) {
	skipIfShort(t)
	const ownerIdx = 1
	tenants := pickTenants("killed", 0, 2, 0)[ownerIdx]
	r := newRingRig(t, 3, tenants)
	for _, n := range r.nodes {
		r.start(n, r.nodes)
	}
	owner := r.nodes[ownerIdx]
	forwarders := []*ringNode{r.nodes[0], r.nodes[2]}

	l := &ackLoad{r: r, base: time.Now().UnixMilli(), stop: make(chan struct{})}
	for _, tn := range tenants {
		for shard, via := range forwarders {
			w := &ackWriter{tenant: tn, via: via, shard: shard,
				acked: make([]int64, ackSeriesPerWriter), sent: make([]int64, ackSeriesPerWriter)}
			for j := range ackSeriesPerWriter {
				w.labels = append(w.labels, []prompb.Label{
					{Name: "__name__", Value: fmt.Sprintf("killed_metric_%d", j%5)},
					{Name: "job", Value: "killed"},
					{Name: "series", Value: fmt.Sprint(j)},
					{Name: "shard", Value: fmt.Sprint(shard)},
				})
			}
			l.writers = append(l.writers, w)
		}
	}
	t.Cleanup(l.halt)
	for _, w := range l.writers {
		l.wg.Add(1)
		go l.run(w)
	}
	l.waitAcks("writers acknowledged while the owner is up", 100, r.nodes[0].proc, r.nodes[1].proc, r.nodes[2].proc)

	l.phase.Store(int32(ownerDown))
	if err := owner.proc.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-owner.proc.done
	// Keep pushing while the owner is down: every writer is answered 503.
	eventually(t, ringWait, "every writer answered 503 while the owner is down", func() error {
		for _, w := range l.writers {
			if n := w.unavailable[ownerDown].Load(); n < 100 {
				return fmt.Errorf("%s writer %d via %s: %d answers 503 so far", w.tenant.id, w.shard, w.via.name, n)
			}
		}
		return nil
	}, forwarders[0].proc, forwarders[1].proc)

	r.launch(owner, filepath.Join(r.dir, owner.name+"-run1.yml"))
	r.waitReady(owner)
	l.phase.Store(int32(ownerBack))
	l.waitAcks("writers acknowledged after the owner's restart", 50, r.nodes[0].proc, r.nodes[1].proc, r.nodes[2].proc)
	l.halt()

	var up, down, back, acks int64
	for _, w := range l.writers {
		up += w.unavailable[ownerUp].Load()
		down += w.unavailable[ownerDown].Load()
		back += w.unavailable[ownerBack].Load()
		acks += w.acks.Load()
	}
	t.Logf("%d requests acknowledged; answered 503: %d while the owner was up, %d while it was down or replaying, %d once it was ready again",
		acks, up, down, back)
	if up > 0 {
		t.Errorf("%d requests answered 503 while the owner was up", up)
	}
	if down == 0 {
		t.Errorf("no request answered 503 while the owner was down")
	}

	before := l.verify("after the owner's restart", owner)
	for _, n := range forwarders {
		r.requireNoneServed("after the owner's restart", n, tenants...)
	}

	// A non-owner restarts: it held nothing of these tenants, hands nothing
	// off, and the owner serves exactly what it served.
	r.stop(forwarders[0])
	r.launch(forwarders[0], filepath.Join(r.dir, forwarders[0].name+"-run1.yml"))
	r.waitReady(forwarders[0])
	after := l.verify("after a non-owner's restart", owner)
	for k, s := range before {
		if a, ok := after[k]; !ok || a != s {
			t.Errorf("series %s: served %+v before the non-owner's restart, %+v (present: %v) after", k, s, a, ok)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("series %s: served only after the non-owner's restart", k)
		}
	}
	for _, n := range forwarders {
		r.requireNoneServed("after a non-owner's restart", n, tenants...)
	}
}

// memberSeries are the series a test pushes for one tenant, kept to be
// compared with what /federate serves.
type memberSeries map[string]servedSample

// pushSample pushes one sample of name{series=i} as tenant to n, insists on
// 204, and records it in want.
func (r *ringRig) pushSample(want map[string]memberSeries, n *ringNode, tn ringTenant, name string, i int, ts int64) {
	r.t.Helper()
	ls := []prompb.Label{{Name: "__name__", Value: name}, {Name: "series", Value: fmt.Sprint(i)}}
	v := float64(ts%100000) + float64(i)/10
	r.mustPush(n, tn, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Timestamp: ts, Value: v}}})
	if want[tn.id] == nil {
		want[tn.id] = memberSeries{}
	}
	want[tn.id][sortedKey(tn.id, ls)] = servedSample{T: ts, V: v}
}

// checkPlacement compares the /federate of nodes with want, where
// owner[tenant] is the instance that must serve it (it may be down, or not
// among nodes: then no node may serve it). A tenant served by another
// instance than its owner, or a series served with another sample than
// pushed, is final; a tenant not yet complete on its owner is not.
func (r *ringRig) checkPlacement(nodes []*ringNode, owner map[string]*ringNode, want map[string]memberSeries) error {
	held := map[*ringNode]map[string]map[string]servedSample{}
	for _, n := range nodes {
		s, err := r.served(n)
		if err != nil {
			return err
		}
		held[n] = byTenant(s)
	}
	var pending []string
	for _, tn := range r.tenants {
		o := owner[tn.id]
		for _, n := range nodes {
			if n != o && len(held[n][tn.id]) > 0 {
				return final{fmt.Errorf("%s serves %d series of %s, owned by %s", n.name, len(held[n][tn.id]), tn.id, o.name)}
			}
		}
		if !slices.Contains(nodes, o) {
			continue
		}
		got := held[o][tn.id]
		for key, s := range got {
			if w, ok := want[tn.id][key]; !ok || w != s {
				return final{fmt.Errorf("%s serves %s as %+v, pushed %+v (pushed: %v)", o.name, key, s, w, ok)}
			}
		}
		if len(got) != len(want[tn.id]) {
			pending = append(pending, fmt.Sprintf("%s: %d of %d series on %s", tn.id, len(got), len(want[tn.id]), o.name))
		}
	}
	if len(pending) > 0 {
		return errors.New(strings.Join(pending, "; "))
	}
	return nil
}

// settle polls checkPlacement until it holds, then a few more times.
func (r *ringRig) settle(what string, nodes []*ringNode, owner map[string]*ringNode, want map[string]memberSeries) {
	r.t.Helper()
	var watch []*process
	for _, n := range nodes {
		watch = append(watch, n.proc)
	}
	check := func() error { return r.checkPlacement(nodes, owner, want) }
	eventually(r.t, ringWait, what, check, watch...)
	for range 3 {
		if err := check(); err != nil {
			r.t.Fatalf("%s, once settled: %v", what, err)
		}
	}
}

// waitCounter waits until metric on n is want (it is counted just after
// the peer has the data); more than want is final.
func (r *ringRig) waitCounter(n *ringNode, metric string, want int) {
	r.t.Helper()
	eventually(r.t, ringWait, fmt.Sprintf("%s: %s = %d", n.name, metric, want), func() error {
		v, err := r.counter(n, metric, "", "")
		switch {
		case err != nil:
			return err
		case v > float64(want):
			return final{fmt.Errorf("%v", v)}
		case v < float64(want):
			return fmt.Errorf("%v", v)
		}
		return nil
	}, n.proc)
}

// TestIntegrationMembershipChange grows a ring of one to two members, then
// shrinks it back, and follows the tenants that move.
func TestIntegrationMembershipChange(t *testing.T) {
	skipIfShort(t)
	byOwner := pickTenants("member", 3, 3) // owners in the ring of two
	stay, move := byOwner[0], byOwner[1]
	r := newRingRig(t, 2, slices.Concat(stay, move))
	gw0, gw1 := r.nodes[0], r.nodes[1]
	now := time.Now().UnixMilli()
	want := map[string]memberSeries{}
	owner := map[string]*ringNode{}

	// A ring of one, with secret_file already set: gw-0 owns everything.
	r.start(gw0, []*ringNode{gw0})
	for _, tn := range r.tenants {
		for i := range 5 {
			r.pushSample(want, gw0, tn, "member_before", i, now)
		}
		owner[tn.id] = gw0
	}
	r.settle("a ring of one serves every tenant", []*ringNode{gw0}, owner, want)

	// Grow, before gw-1 is up: gw-0 stops serving the moved tenants at
	// once, keeps them (its handoff fails) and answers their writes 503.
	both := []*ringNode{gw0, gw1}
	r.stop(gw0)
	r.start(gw0, both)
	for _, tn := range move {
		owner[tn.id] = gw1
	}
	r.settle("grown to [gw-0, gw-1] with gw-1 down: gw-0 serves only the tenants it keeps", []*ringNode{gw0}, owner, want)
	for _, tn := range move {
		ls := []prompb.Label{{Name: "__name__", Value: "member_refused"}}
		code, msg, err := r.push(gw0, tn, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Timestamp: now, Value: 1}}})
		if err != nil || code != http.StatusServiceUnavailable {
			t.Errorf("push of %s, owned by gw-1 which is down, to gw-0: status %d (%v), want 503: %s", tn.id, code, err, msg)
		}
	}
	// gw-1 starts: gw-0 retries its handoff (after a failure within
	// seconds, not a minute) and the moved tenants appear on gw-1.
	r.start(gw1, both)
	r.settle("after growing to [gw-0, gw-1], the moved tenants are on gw-1 only", both, owner, want)
	r.waitCounter(gw0, "fedgate_handoff_series_total", 5*len(move))
	// Pushes reach the new owners through either instance.
	for _, tn := range move {
		r.pushSample(want, gw0, tn, "member_grown", 0, now+1)
	}
	for _, tn := range stay {
		r.pushSample(want, gw1, tn, "member_grown", 0, now+1)
	}
	r.settle("pushes after growing, through the other instance", both, owner, want)

	// gw-0 restarts in the same ring: what it handed off stays handed off,
	// and nothing it re-reads from its log overrides a newer sample on gw-1.
	for _, tn := range move {
		r.pushSample(want, gw0, tn, "member_before", 0, now+1)
	}
	r.stop(gw0)
	r.start(gw0, both)
	r.settle("gw-0 restarted in the same ring", both, owner, want)
	// A handoff right after startup runs as /-/ready flips; the polls of
	// settle leave it time to show.
	if v, err := r.counter(gw0, "fedgate_handoff_series_total", "", ""); err != nil || v != 0 {
		t.Errorf("gw-0, restarted in the ring it handed off in, handed off %v series again (%v): handed-off series came back from its log", v, err)
	}
	if v, err := r.counter(gw0, "fedgate_head_series", "", ""); err != nil || v != float64(6*len(stay)) {
		t.Errorf("gw-0 holds %v series (%v), want %d: its own tenants' only", v, err, 6*len(stay))
	}

	// Shrink: gw-1 leaves. gw-0 first takes the ring of one; gw-1 restarts
	// outside the ring (self gw-1, members [gw-0]): it owns nothing, hands
	// everything to gw-0 and forwards every write.
	r.stop(gw0)
	r.start(gw0, []*ringNode{gw0})
	r.stop(gw1)
	r.start(gw1, []*ringNode{gw0})
	s, err := r.served(gw1)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) > 0 {
		t.Errorf("gw-1, outside the ring, serves %d series once ready, want none", len(s))
	}
	for _, tn := range move {
		owner[tn.id] = gw0
	}
	r.settle("after gw-1 left, gw-0 serves every tenant and gw-1 none", both, owner, want)
	r.waitCounter(gw1, "fedgate_handoff_series_total", 6*len(move))
	for _, tn := range r.tenants {
		r.pushSample(want, gw1, tn, "member_shrunk", 0, now+2)
	}
	r.settle("pushes to the leaving gw-1 are forwarded to gw-0", both, owner, want)
}
