package gateway

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/wal/head"
)

// heldSeries creates, in a fresh head, a series of tenant with the given
// packed labels and returns it.
func heldSeries(t *testing.T, tenant string, lbls []byte) *head.Series {
	t.Helper()
	hd := head.New(head.Options{Retention: time.Hour, Now: func() time.Time { return testNow }}, nil)
	b := &head.Batch{Tenant: tenant, Series: []head.BatchSeries{{Labels: lbls, Samples: []head.Sample{{T: testNow.UnixMilli(), V: 1}}}}}
	ss, err := hd.Prepare(b, nil)
	if err != nil || ss[0] == nil {
		t.Fatalf("prepare: %v", err)
	}
	return ss[0]
}

// TestResolveKnownNeverDisagreesWithResolve is the check's whole contract,
// over random label sets close to a held one: whenever resolveKnown takes
// the candidate, resolve makes exactly its labels, valid, with the same
// overwritten; and for labels sent sorted, as senders send them, it takes
// every candidate resolve would make.
func TestResolveKnownNeverDisagreesWithResolve(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	names := []string{"__name__", "a", "a_rather_long_name", "cluster_id", "instance", "job", "le", "pod", "zone", "", "1bad", "dup"}
	values := []string{"up", "x", "cluster-a", "cluster-b", "", "10.0.0.1:80", "héllo", "\xff", strings.Repeat("v", 40)}
	set := &Settings{ClusterLabel: "cluster_id", Limits: config.DefaultLimits()}
	renamed := &Settings{ClusterLabel: "zone", Limits: config.DefaultLimits()} // a cluster label since changed
	limits := []config.Limits{set.Limits, set.Limits, set.Limits, set.Limits, set.Limits, set.Limits}
	limits[1].MaxLabelValueLength, limits[2].MaxLabelsPerSeries = 20, 4
	limits[3].MaxLabelNameLength = 5  // below "cluster_id", "instance"
	limits[4].MaxLabelValueLength = 8 // below the tenants' IDs
	limits[5].MaxLabelNameLength = 12 // below "a_rather_long_name" alone

	cands := map[string]*head.Series{}
	taken, agreed := 0, 0
	for range 40000 {
		var in []remotewrite.Label
		for range rng.IntN(6) {
			in = append(in, remotewrite.Label{Name: names[rng.IntN(len(names))], Value: values[rng.IntN(len(values))]})
		}
		if rng.IntN(2) == 0 {
			in = append(in, remotewrite.Label{Name: "__name__", Value: "up"})
		}
		if rng.IntN(3) > 0 {
			slices.SortFunc(in, func(a, b remotewrite.Label) int { return strings.Compare(a.Name, b.Name) })
		}
		tenant := []string{"cluster-a", "cluster-b"}[rng.IntN(2)]
		lim := &limits[rng.IntN(len(limits))]

		// What resolve makes of in, if valid, is a candidate of its own.
		// The others are near misses (a key collision): what it makes for
		// the other tenant, or of in less one label, or under the loosest
		// limits.
		makes := func(set *Settings, tenant string, lim *config.Limits, in []remotewrite.Label) (string, outcome) {
			st := &writeState{input: new(input)}
			out := set.resolve(st, tenant, lim, in)
			if out.reason != "" || out.dropped != "" {
				return "", out
			}
			if cands[string(st.packed)] == nil {
				cands[string(st.packed)] = heldSeries(t, tenant, st.packed)
			}
			return string(st.packed), out
		}
		want, out := makes(set, tenant, lim, in)
		var near string
		switch rng.IntN(5) {
		case 0:
			near = want
		case 1:
			near, _ = makes(set, map[string]string{"cluster-a": "cluster-b", "cluster-b": "cluster-a"}[tenant], lim, in)
		case 2:
			if len(in) > 0 {
				k := rng.IntN(len(in))
				near, _ = makes(set, tenant, lim, slices.Delete(slices.Clone(in), k, k+1))
			}
		case 3:
			near, _ = makes(set, tenant, &limits[0], in)
		case 4:
			near, _ = makes(renamed, tenant, &limits[0], in)
		}
		cand := cands[near]
		got, overwritten := set.resolveKnown(cand, tenant, lim, in)
		if got != nil {
			taken++
			if want == "" {
				t.Fatalf("took %s for %v (tenant %s), which resolve refuses: %s", got.Labels(), in, tenant, out.msg)
			}
			if string(got.Labels()) != want {
				t.Fatalf("took %s for %v (tenant %s), resolve makes %s", got.Labels(), in, tenant, head.Labels(want))
			}
			if overwritten != out.overwritten {
				t.Fatalf("overwritten %v, resolve says %v, for %v", overwritten, out.overwritten, in)
			}
		}
		if want != "" && cand != nil && string(cand.Labels()) == want && isSorted(in) {
			agreed++
			if got == nil {
				t.Fatalf("refused the right candidate %s for sorted %v (tenant %s)", cand.Labels(), in, tenant)
			}
		}
	}
	if taken < 1000 || agreed < 1000 {
		t.Fatalf("only %d candidates taken, %d sorted matches: the generator tests too little", taken, agreed)
	}
}

func isSorted(in []remotewrite.Label) bool {
	return slices.IsSortedFunc(in, func(a, b remotewrite.Label) int { return strings.Compare(a.Name, b.Name) })
}

// TestKnownSeriesSkipTheFullPath pushes the same series twice: the second
// push resolves every series through the memo and holds what the first
// did, but for a series whose labels come unsorted, which takes the full
// path each time.
func TestKnownSeriesSkipTheFullPath(t *testing.T) {
	h, hd := newTestHandler(t)
	known := func() float64 { return testutil.ToFloat64(h.metrics.known) }
	body := func(v float64) []byte {
		return encode(t,
			series(v, testNow.UnixMilli()+int64(v), "__name__", "up", "job", "a"),
			series(v, testNow.UnixMilli()+int64(v), "__name__", "up", "cluster_id", "forged", "job", "b"),
			series(v, testNow.UnixMilli()+int64(v), "job", "c", "__name__", "up"), // unsorted
		)
	}
	if w := (post{body: body(1), token: "token-a"}).do(h); w.Code != http.StatusNoContent {
		t.Fatalf("first push: %d %s", w.Code, w.Body)
	}
	if known() != 0 {
		t.Fatalf("%v known series on the first push", known())
	}
	overwrites := testutil.ToFloat64(h.metrics.overwrites)
	if w := (post{body: body(2), token: "token-a"}).do(h); w.Code != http.StatusNoContent {
		t.Fatalf("second push: %d %s", w.Code, w.Body)
	}
	if known() != 2 {
		t.Fatalf("%v known series on the second push, want the 2 sorted ones", known())
	}
	if got := testutil.ToFloat64(h.metrics.overwrites) - overwrites; got != 1 {
		t.Fatalf("%v cluster label overwrites on the second push, want 1", got)
	}
	if hd.NumSeries() != 3 {
		t.Fatalf("%d series held, want 3", hd.NumSeries())
	}
	for _, job := range []string{"a", "b", "c"} {
		if v, _, ok := held(hd, "__name__", "up", "cluster_id", "cluster-a", "job", job); !ok || v != 2 {
			t.Fatalf("job %s: held %v %v, want 2", job, v, ok)
		}
	}
}

// TestKnownSeriesFollowSettings: a memo entry made under one configuration
// never lets through what another refuses or stamps differently.
func TestKnownSeriesFollowSettings(t *testing.T) {
	h, hd := newTestHandler(t)
	push := func(v float64) int {
		return (post{body: encode(t, series(v, testNow.UnixMilli()+int64(v), "__name__", "up", "job", "a-rather-long-job-name")), token: "token-a"}).do(h).Code
	}
	if code := push(1); code != http.StatusNoContent {
		t.Fatalf("first push: %d", code)
	}
	apply := func(yaml string) {
		t.Helper()
		f, err := config.Parse([]byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSettings(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Apply(s)
	}

	// Tighter limits: the known series is now invalid.
	apply("tenants: [{id: cluster-a, token: token-a, limits: {max_label_value_length: 10}}]")
	if code := push(2); code != http.StatusBadRequest {
		t.Fatalf("value over the new limit: %d, want 400", code)
	}
	// Another cluster label: a new series under it, not the old one.
	apply("cluster_label: cluster\ntenants: [{id: cluster-a, token: token-a}]")
	if code := push(3); code != http.StatusNoContent {
		t.Fatalf("new cluster label: %d", code)
	}
	if v, _, ok := held(hd, "__name__", "up", "cluster", "cluster-a", "job", "a-rather-long-job-name"); !ok || v != 3 {
		t.Fatalf("series under the new cluster label: %v %v", v, ok)
	}
	// A relabelling rule: the tenant takes the full path, and the rule
	// applies.
	apply(`tenants: [{id: cluster-a, token: token-a, relabel_configs: [{action: labeldrop, regex: job}]}]`)
	if code := push(4); code != http.StatusNoContent {
		t.Fatalf("with a rule: %d", code)
	}
	if v, _, ok := held(hd, "__name__", "up", "cluster_id", "cluster-a"); !ok || v != 4 {
		t.Fatalf("series with job dropped: %v %v", v, ok)
	}
}

// TestKnownSeriesAfterRemoval: a series removed from the head (expired, or
// moved to another instance) is found again the full way, and recreated.
func TestKnownSeriesAfterRemoval(t *testing.T) {
	h, hd := newTestHandler(t)
	push := func(v float64) {
		t.Helper()
		if w := (post{body: encode(t, series(v, testNow.UnixMilli()+int64(v), "__name__", "up", "job", "a")), token: "token-a"}).do(h); w.Code != http.StatusNoContent {
			t.Fatalf("push: %d %s", w.Code, w.Body)
		}
	}
	push(1)
	hd.Remove(hd.AppendAllSeries(nil))
	push(2)
	if hd.NumSeries() != 1 {
		t.Fatalf("%d series after the push that followed removal", hd.NumSeries())
	}
	if v, _, ok := held(hd, "__name__", "up", "cluster_id", "cluster-a", "job", "a"); !ok || v != 2 {
		t.Fatalf("held %v %v after removal and push", v, ok)
	}
	push(3) // known again, through the new series
	if got := testutil.ToFloat64(h.metrics.known); got != 1 {
		t.Fatalf("%v known series, want 1 (the third push)", got)
	}
}

// removingStore removes the batch's known series from the head before it
// appends: what happens when GC or a handoff runs between the memo's
// answer and the storage's Prepare.
type removingStore struct{ hd *head.Head }

func (r removingStore) Append(ctx context.Context, b *head.Batch) error {
	var known []*head.Series
	for _, bs := range b.Series {
		if bs.Known != nil {
			known = append(known, bs.Known)
		}
	}
	r.hd.Remove(known)
	return r.hd.Append(ctx, b)
}

func TestKnownSeriesRemovedBeforeTheStorageAppends(t *testing.T) {
	h, hd := newTestHandler(t)
	h.storage = removingStore{hd}
	for v := range 3 {
		w := (post{body: encode(t, series(float64(v), testNow.UnixMilli()+int64(v), "__name__", "up", "job", "a")), token: "token-a"}).do(h)
		if w.Code != http.StatusNoContent {
			t.Fatalf("push %d: %d %s", v, w.Code, w.Body)
		}
		if hd.NumSeries() != 1 {
			t.Fatalf("push %d: %d series held", v, hd.NumSeries())
		}
		if got, _, ok := held(hd, "__name__", "up", "cluster_id", "cluster-a", "job", "a"); !ok || got != float64(v) {
			t.Fatalf("push %d: held %v %v", v, got, ok)
		}
	}
	if got := testutil.ToFloat64(h.metrics.known); got != 2 {
		t.Fatalf("%v known series, want 2: the memo must name each recreated series", got)
	}
}

// TestUnsortedLabelsAreNotRemembered: labels sent out of order get no memo
// entry, which resolveKnown could never take.
func TestUnsortedLabelsAreNotRemembered(t *testing.T) {
	h, hd := newTestHandler(t)
	body := encode(t, series(1, testNow.UnixMilli(), "job", "a", "__name__", "up"))
	if w := (post{body: body, token: "token-a"}).do(h); w.Code != http.StatusNoContent {
		t.Fatalf("push: %d %s", w.Code, w.Body)
	}
	var req remotewrite.Request
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	if hd.Memo("cluster-a").Get(memoKey(req.Series[0].LabelBytes)) != nil {
		t.Fatal("unsorted labels were remembered")
	}
}
