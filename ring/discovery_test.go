package ring

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeResolver answers from what the test set last; each lookup is
// announced on calls, when it is not nil.
type fakeResolver struct {
	mu    sync.Mutex
	hosts []string
	srv   []*net.SRV
	err   error
	calls chan string
}

func (f *fakeResolver) set(hosts []string, srv []*net.SRV, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts, f.srv, f.err = hosts, srv, err
}

func (f *fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	f.mu.Lock()
	hosts, err := slices.Clone(f.hosts), f.err
	f.mu.Unlock()
	f.announce(host)
	return hosts, err
}

func (f *fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	if service != "" || proto != "" {
		return "", nil, fmt.Errorf("service %q and proto %q, want the whole name in name", service, proto)
	}
	f.mu.Lock()
	srv, err := slices.Clone(f.srv), f.err
	f.mu.Unlock()
	f.announce(name)
	return name, srv, err
}

func (f *fakeResolver) announce(name string) {
	if f.calls != nil {
		f.calls <- name
	}
}

// pods returns the SRV records of a headless service over the given pod
// ordinals, in the order given.
func pods(ordinals ...int) []*net.SRV {
	recs := make([]*net.SRV, len(ordinals))
	for i, o := range ordinals {
		recs[i] = &net.SRV{Target: fmt.Sprintf("fedgate-%d.fedgate.monitoring.svc.cluster.local.", o), Port: 9096}
	}
	return recs
}

func names(r *Ring) string {
	if r == nil {
		return "<nil>"
	}
	return strings.Join(memberNames(r), " ")
}

const srvName = "_internal._tcp.fedgate.monitoring.svc.cluster.local"

func newDiscovery(t *testing.T, opts DNSOptions, res *fakeResolver) (*DNSDiscovery, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	d, err := NewDNSDiscovery(opts, res, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	return d, reg
}

func TestCompareNatural(t *testing.T) {
	// Each list is in natural order.
	for _, want := range [][]string{
		{"fedgate-0", "fedgate-1", "fedgate-2", "fedgate-9", "fedgate-10", "fedgate-11", "fedgate-100"},
		{"fedgate-1.fedgate.ns.svc", "fedgate-2.fedgate.ns.svc", "fedgate-10.fedgate.ns.svc"},
		{"10.0.0.9:9096", "10.0.0.10:9096", "10.0.1.2:9096", "10.1.0.0:9096", "192.168.0.1:9096"},
		{"a", "a0", "a00", "a01", "a1", "a1b", "a2", "b"},
		{"", "0", "00", "1", "9", "10", "a"},
		{"gw-a", "gw-b", "gw1", "gw2"},
		{"x18446744073709551616", "x99999999999999999999", "x100000000000000000000"},
	} {
		got := slices.Clone(want)
		rand.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
		slices.SortFunc(got, compareNatural)
		if !slices.Equal(got, want) {
			t.Errorf("sorted: %q\nwant:   %q", got, want)
		}
	}
}

// TestCompareNaturalIsATotalOrder: antisymmetric, equal only for equal
// strings, transitive — over strings built to stress digit runs, leading
// zeros and prefixes.
func TestCompareNaturalIsATotalOrder(t *testing.T) {
	parts := []string{"", "0", "00", "1", "01", "9", "10", "a", "b", "-", ".", ":", "~"}
	var set []string
	for _, a := range parts {
		for _, b := range parts {
			for _, c := range parts {
				set = append(set, a+b+c)
			}
		}
	}
	slices.Sort(set)
	set = slices.Compact(set)
	for _, a := range set {
		for _, b := range set {
			ab, ba := compareNatural(a, b), compareNatural(b, a)
			if ab != -ba || (ab == 0) != (a == b) {
				t.Fatalf("compare(%q, %q) = %d, compare(%q, %q) = %d", a, b, ab, b, a, ba)
			}
		}
	}
	slices.SortFunc(set, compareNatural)
	for i := 1; i < len(set); i++ { // sorted: every earlier string is smaller
		for j := range i {
			if compareNatural(set[j], set[i]) >= 0 {
				t.Fatalf("not transitive: %q sorted before %q", set[j], set[i])
			}
		}
	}
}

func TestDNSDiscoveryARecords(t *testing.T) {
	res := &fakeResolver{}
	res.set([]string{"10.0.0.10", "10.0.0.9", "fd00::2", "10.0.0.9", "10.0.1.1"}, nil, nil)
	d, _ := newDiscovery(t, DNSOptions{Addr: "fedgate.example.org:9096", Self: "10.0.0.10"}, res)
	r, changed, err := d.Refresh(context.Background())
	if err != nil || !changed {
		t.Fatalf("Refresh: changed=%v, err=%v", changed, err)
	}
	want := []Member{
		{Name: "10.0.0.9:9096", URL: "http://10.0.0.9:9096"},
		{Name: "10.0.0.10:9096", URL: "http://10.0.0.10:9096"},
		{Name: "10.0.1.1:9096", URL: "http://10.0.1.1:9096"},
		{Name: "[fd00::2]:9096", URL: "http://[fd00::2]:9096"},
	}
	if !slices.Equal(r.MemberList(), want) {
		t.Fatalf("members %v, want %v", r.MemberList(), want)
	}
	if r.Self().Name != "10.0.0.10:9096" {
		t.Fatalf("self %q", r.Self().Name)
	}
}

func TestDNSDiscoverySRVRecords(t *testing.T) {
	res := &fakeResolver{}
	recs := pods(10, 2, 0, 1, 9, 11, 3, 4, 5, 6, 7, 8)
	recs = append(recs, &net.SRV{Target: ".", Port: 9096}) // "not available": ignored
	res.set(nil, recs, nil)
	d, _ := newDiscovery(t, DNSOptions{Addr: srvName, Self: "fedgate-2", Scheme: "https"}, res)
	r, changed, err := d.Refresh(context.Background())
	if err != nil || !changed {
		t.Fatalf("Refresh: changed=%v, err=%v", changed, err)
	}
	if r.Members() != 12 {
		t.Fatalf("%d members: %s", r.Members(), names(r))
	}
	for i, m := range r.MemberList() {
		name := fmt.Sprintf("fedgate-%d.fedgate.monitoring.svc.cluster.local", i)
		if m.Name != name || m.URL != "https://"+name+":9096" {
			t.Fatalf("bucket %d is %v, want %s in ordinal order", i, m, name)
		}
	}
	if r.Self().Name != "fedgate-2.fedgate.monitoring.svc.cluster.local" {
		t.Fatalf("self %q", r.Self().Name)
	}
}

// TestDNSDiscoveryKeepsLastGoodRing: an answer that cannot be used leaves
// the ring in force alone and is counted under its reason.
func TestDNSDiscoveryKeepsLastGoodRing(t *testing.T) {
	for name, tc := range map[string]struct {
		answer func(*fakeResolver)
		reason string
		errIs  error
	}{
		"lookup failed": {func(f *fakeResolver) {
			f.set(nil, nil, &net.DNSError{Err: "i/o timeout", Name: srvName, IsTimeout: true})
		}, reasonError, nil},
		"partial answer": {func(f *fakeResolver) {
			f.set(nil, pods(0), errors.New("cannot unmarshal DNS message"))
		}, reasonError, nil},
		"no records": {func(f *fakeResolver) { f.set(nil, nil, nil) }, reasonEmpty, ErrEmptyAnswer},
		"only a dot target": {func(f *fakeResolver) {
			f.set(nil, []*net.SRV{{Target: ".", Port: 9096}}, nil)
		}, reasonEmpty, ErrEmptyAnswer},
		"no such name": {func(f *fakeResolver) {
			f.set(nil, nil, &net.DNSError{Err: "no such host", Name: srvName, IsNotFound: true})
		}, reasonEmpty, ErrEmptyAnswer},
		"self missing": {func(f *fakeResolver) { f.set(nil, pods(0, 2, 3), nil) }, reasonSelfMissing, ErrSelfMissing},
		"one name, two ports": {func(f *fakeResolver) {
			f.set(nil, append(pods(0, 1, 2), &net.SRV{Target: "fedgate-2.fedgate.monitoring.svc.cluster.local.", Port: 9097}), nil)
		}, reasonError, nil},
	} {
		t.Run(name, func(t *testing.T) {
			res := &fakeResolver{}
			res.set(nil, pods(0, 1, 2), nil)
			d, _ := newDiscovery(t, DNSOptions{Addr: srvName, Self: "fedgate-1"}, res)
			good, _, err := d.Refresh(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			tc.answer(res)
			for i := range 2 {
				r, changed, err := d.Refresh(context.Background())
				if err == nil || changed || r != good {
					t.Fatalf("refused answer: ring %s, changed=%v, err=%v; want the last good ring and an error", names(r), changed, err)
				}
				if tc.errIs != nil && !errors.Is(err, tc.errIs) {
					t.Fatalf("err = %v, want %v", err, tc.errIs)
				}
				for _, reason := range []string{reasonError, reasonEmpty, reasonSelfMissing} {
					want := 0.0
					if reason == tc.reason {
						want = float64(i + 1)
					}
					if got := testutil.ToFloat64(d.errors.WithLabelValues(reason)); got != want {
						t.Fatalf("errors{reason=%q} = %v, want %v", reason, got, want)
					}
				}
			}
			res.set(nil, pods(2, 1, 0), nil)
			if r, changed, err := d.Refresh(context.Background()); err != nil || changed || r != good {
				t.Fatalf("the good answer again: ring %s, changed=%v, err=%v; want no change", names(r), changed, err)
			}
		})
	}
}

// TestDNSDiscoveryFirstAnswerRefused: before any good answer there is no
// ring, and Refresh says why.
func TestDNSDiscoveryFirstAnswerRefused(t *testing.T) {
	res := &fakeResolver{}
	res.set(nil, pods(0, 2), nil) // this pod's record is not published yet
	d, _ := newDiscovery(t, DNSOptions{Addr: srvName, Self: "fedgate-1"}, res)
	if r, changed, err := d.Refresh(context.Background()); r != nil || changed || !errors.Is(err, ErrSelfMissing) {
		t.Fatalf("ring %s, changed=%v, err=%v; want nil, false, ErrSelfMissing", names(r), changed, err)
	}
	res.set(nil, pods(0, 2, 1), nil)
	if r, changed, err := d.Refresh(context.Background()); err != nil || !changed || r.Self().Name != "fedgate-1.fedgate.monitoring.svc.cluster.local" {
		t.Fatalf("ring %s, changed=%v, err=%v", names(r), changed, err)
	}
}

func TestDNSDiscoveryChanges(t *testing.T) {
	res := &fakeResolver{}
	res.set(nil, pods(0, 1), nil)
	d, _ := newDiscovery(t, DNSOptions{Addr: srvName, Self: "fedgate-0"}, res)
	ctx := context.Background()
	first, changed, err := d.Refresh(ctx)
	if err != nil || !changed {
		t.Fatalf("first answer: changed=%v, err=%v", changed, err)
	}
	res.set(nil, pods(1, 0), nil)
	if r, changed, err := d.Refresh(ctx); err != nil || changed || r != first {
		t.Fatalf("same members in another order: ring %s, changed=%v, err=%v", names(r), changed, err)
	}
	res.set(nil, pods(2, 0, 1), nil)
	grown, changed, err := d.Refresh(ctx)
	if err != nil || !changed || grown.Members() != 3 || first.Members() != 2 {
		t.Fatalf("grown: ring %s, changed=%v, err=%v", names(grown), changed, err)
	}
	res.set(nil, pods(0, 1), nil)
	if r, changed, err := d.Refresh(ctx); err != nil || !changed || !r.sameMembers(first) {
		t.Fatalf("shrunk: ring %s, changed=%v, err=%v", names(r), changed, err)
	}
}

// TestDNSDiscoveryRemoveAfter: a member lacking from the answers stays in
// the ring until it has been lacking for RemoveAfter; one that comes back
// in time changes nothing. New members join at once.
func TestDNSDiscoveryRemoveAfter(t *testing.T) {
	res := &fakeResolver{}
	res.set(nil, pods(0, 1, 2, 3), nil)
	d, _ := newDiscovery(t, DNSOptions{Addr: srvName, Self: "fedgate-0", RemoveAfter: time.Minute}, res)
	now := time.Unix(1e9, 0)
	d.now = func() time.Time { return now }
	ctx := context.Background()
	full, _, err := d.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	step := func(ordinals []int, advance time.Duration, wantChanged bool, wantOrdinals ...int) *Ring {
		t.Helper()
		now = now.Add(advance)
		res.set(nil, pods(ordinals...), nil)
		r, changed, err := d.Refresh(ctx)
		want := []string{}
		for _, o := range wantOrdinals {
			want = append(want, fmt.Sprintf("fedgate-%d.fedgate.monitoring.svc.cluster.local", o))
		}
		if err != nil || changed != wantChanged || names(r) != strings.Join(want, " ") {
			t.Fatalf("answer %v at +%s: ring %s, changed=%v, err=%v; want %v, changed=%v", ordinals, advance, names(r), changed, err, wantOrdinals, wantChanged)
		}
		return r
	}
	// fedgate-2 is recreated: gone for a moment, then back.
	if r := step([]int{0, 1, 3}, 0, false, 0, 1, 2, 3); r != full {
		t.Fatal("the ring was rebuilt while nothing changed")
	}
	step([]int{0, 1, 3}, 30*time.Second, false, 0, 1, 2, 3)
	step([]int{0, 1, 2, 3}, 20*time.Second, false, 0, 1, 2, 3)
	// It leaves again; the clock starts over, and a newcomer joins at once.
	step([]int{0, 1, 3}, 0, false, 0, 1, 2, 3)
	step([]int{0, 1, 3, 4}, 59*time.Second, true, 0, 1, 2, 3, 4)
	step([]int{0, 1, 3, 4}, time.Second, true, 0, 1, 3, 4)
	step([]int{0, 1, 3, 4}, time.Hour, false, 0, 1, 3, 4)
	// A refused answer neither starts nor stops the clock.
	step([]int{0, 1, 3}, 0, false, 0, 1, 3, 4)
	res.set(nil, nil, nil)
	now = now.Add(time.Hour)
	if _, _, err := d.Refresh(ctx); !errors.Is(err, ErrEmptyAnswer) {
		t.Fatalf("empty answer: err = %v", err)
	}
	step([]int{0, 1, 3}, 0, true, 0, 1, 3)
}

// TestDNSDiscoveryRun: Run puts a changed ring in force and calls onChange
// once with the old and the new ring; answers that change nothing call
// nothing. Run returns when its context is done.
func TestDNSDiscoveryRun(t *testing.T) {
	res := &fakeResolver{calls: make(chan string)}
	res.set(nil, pods(0, 1), nil)
	d, _ := newDiscovery(t, DNSOptions{Addr: srvName, Self: "fedgate-0", Refresh: time.Millisecond}, res)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	go func() { <-res.calls }() // the startup lookup
	first, _, err := d.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur := NewCurrent(first)
	type change struct{ old, new *Ring }
	changes := make(chan change, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx, cur, func(old, new *Ring) { changes <- change{old, new} })
	}()

	// Lookups that find the same members change nothing.
	for range 5 {
		<-res.calls
	}
	res.set(nil, pods(0, 1, 2), nil)
	<-res.calls // may have read the old answer or the new one
	<-res.calls // reads the new one
	<-res.calls // the change has been handed to onChange
	select {
	case c := <-changes:
		if c.old != first || c.new.Members() != 3 || cur.Load() != c.new {
			t.Fatalf("onChange(%s, %s); in force: %s", names(c.old), names(c.new), names(cur.Load()))
		}
	default:
		t.Fatal("onChange was not called")
	}
	for range 5 {
		<-res.calls
	}
	select {
	case c := <-changes:
		t.Fatalf("onChange called again with %s, %s", names(c.old), names(c.new))
	default:
	}

	cancel()
	for {
		select {
		case <-res.calls:
			continue
		case <-done:
		}
		break
	}
}

func TestNewDNSDiscoveryOptions(t *testing.T) {
	for addr, ok := range map[string]bool{
		"fedgate.example.org:9096":        true,
		"10.0.0.1:9096":                   true,
		"[fd00::1]:9096":                  true,
		srvName:                           true,
		"fedgate.example.org":             false,
		":9096":                           false,
		"fedgate.example.org:0":           false,
		"fedgate.example.org:internal":    false,
		"fedgate.example.org:70000":       false,
		"_internal.fedgate.example.org":   false,
		"_internal._tcp.fedgate.svc:9096": false,
		"":                                false,
	} {
		_, err := NewDNSDiscovery(DNSOptions{Addr: addr, Self: "x"}, &fakeResolver{}, nil, nil)
		if (err == nil) != ok {
			t.Errorf("Addr %q: err = %v, want ok=%v", addr, err, ok)
		}
	}
	for name, opts := range map[string]DNSOptions{
		"no self":               {Addr: srvName},
		"negative refresh":      {Addr: srvName, Self: "x", Refresh: -time.Second},
		"negative remove_after": {Addr: srvName, Self: "x", RemoveAfter: -time.Second},
		"scheme":                {Addr: srvName, Self: "x", Scheme: "ftp"},
	} {
		if _, err := NewDNSDiscovery(opts, nil, nil, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	d, reg := newDiscovery(t, DNSOptions{Addr: srvName, Self: "x"}, &fakeResolver{})
	if d.opts.Refresh != 30*time.Second || d.opts.Scheme != "http" {
		t.Errorf("defaults: refresh %s, scheme %q", d.opts.Refresh, d.opts.Scheme)
	}
	if n, err := testutil.GatherAndCount(reg, "fedgate_ring_discovery_errors_total"); err != nil || n != 3 {
		t.Errorf("errors_total series: %d, %v; want the 3 reasons from the start", n, err)
	}
	if _, err := NewDNSDiscovery(DNSOptions{Addr: srvName, Self: "x"}, nil, nil, reg); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
}
