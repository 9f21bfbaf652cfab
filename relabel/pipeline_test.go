package relabel

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promrelabel "github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v3"

	"github.com/fedgate/fedgate/gateway/remotewrite"
)

func rules(t *testing.T, y string) []*promrelabel.Config {
	t.Helper()
	var cfgs []*promrelabel.Config
	if err := yaml.Unmarshal([]byte(y), &cfgs); err != nil {
		t.Fatal(err)
	}
	return cfgs
}

func toLabels(kv ...string) []remotewrite.Label {
	var ls []remotewrite.Label
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, l(kv[i], kv[i+1]))
	}
	return ls
}

func render(ls []remotewrite.Label) string {
	ss := make([]string, 0, len(ls))
	for _, l := range ls {
		ss = append(ss, l.Name+"="+l.Value)
	}
	slices.Sort(ss)
	return strings.Join(ss, ",")
}

// TestRelabelMatchesPrometheus runs each action through the pipeline and
// through Prometheus' own relabel.Process, and requires the same result.
func TestRelabelMatchesPrometheus(t *testing.T) {
	in := []string{"__name__", "http_requests_total", "job", "api", "instance", "10.0.0.1:8080", "path", "/Users/42", "version", "1.2.3", "code", "200"}
	cases := map[string]string{
		"replace":        `[{source_labels: [job, code], separator: "-", regex: '(.*)-(2..)', target_label: kind, replacement: '${1}_ok'}]`,
		"replace no hit": `[{source_labels: [job], regex: 'db', target_label: kind, replacement: x}]`,
		"replace delete": `[{source_labels: [nothing], target_label: version, replacement: ''}]`,
		"keep":           `[{action: keep, source_labels: [code], regex: '2..'}]`,
		"keep miss":      `[{action: keep, source_labels: [code], regex: '5..'}]`,
		"drop":           `[{action: drop, source_labels: [job], regex: api}]`,
		"keepequal":      `[{action: keepequal, source_labels: [code], target_label: code}]`,
		"dropequal":      `[{action: dropequal, source_labels: [job], target_label: job}]`,
		"hashmod":        `[{action: hashmod, source_labels: [instance], modulus: 8, target_label: shard}]`,
		"labelmap":       `[{action: labelmap, regex: '(ver)sion', replacement: '${1}'}]`,
		// Two labels mapped to one name: the last one written wins, and the
		// builder's order (labels as they came, then those set) decides it.
		"labelmap after replace": `[{source_labels: [job], target_label: code, replacement: "3"}, {action: labelmap, regex: 'code|job', replacement: same}]`,
		"labeldrop":              `[{action: labeldrop, regex: 'version|path'}]`,
		"labelkeep":              `[{action: labelkeep, regex: '__name__|job'}]`,
		"lowercase":              `[{action: lowercase, source_labels: [path], target_label: path}]`,
		"uppercase":              `[{action: uppercase, source_labels: [job], target_label: team}]`,
		"drop the name":          `[{action: labeldrop, regex: '__name__'}]`,
		"chain": `[{action: labeldrop, regex: version}, {source_labels: [path], regex: '/Users/[0-9]+', target_label: path, replacement: '/Users/:id'},
		           {action: replace, target_label: env, replacement: prod}, {action: keep, source_labels: [__name__], regex: 'http_.*'},
		           {action: hashmod, source_labels: [instance], modulus: 4, target_label: shard}]`,
	}
	for name, y := range cases {
		t.Run(name, func(t *testing.T) {
			cfgs := rules(t, y)
			want, keep := promrelabel.Process(labels.FromStrings(in...), cfgs...)
			if keep && want.Get(labels.MetricName) == "" {
				keep = false // fedgate drops a series without a name, and says so
			}
			p, err := NewPipeline("t", nil, cfgs, nil, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Sorted, as the write path gives them.
			var sorted []remotewrite.Label
			labels.FromStrings(in...).Range(func(x labels.Label) { sorted = append(sorted, l(x.Name, x.Value)) })
			got, dropped := p.Apply(sorted, &State{})
			if keep != (dropped == "") {
				t.Fatalf("kept=%v (dropped %q), Prometheus kept=%v", dropped == "", dropped, keep)
			}
			if !keep {
				if dropped != ReasonRelabel {
					t.Fatalf("dropped for %q, want %q", dropped, ReasonRelabel)
				}
				return
			}
			var wantLs []remotewrite.Label
			want.Range(func(x labels.Label) { wantLs = append(wantLs, l(x.Name, x.Value)) })
			if render(got) != render(wantLs) {
				t.Fatalf("got  %s\nwant %s", render(got), render(wantLs))
			}
		})
	}
}

func TestAllowlist(t *testing.T) {
	p, err := NewPipeline("t", []string{`{__name__=~"up|node_.*"}`, `http_requests_total{code=~"5.."}`, `{job="special"}`}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ls   []string
		keep bool
	}{
		{[]string{"__name__", "up", "job", "x"}, true},
		{[]string{"__name__", "node_load1"}, true},
		{[]string{"__name__", "upp"}, false}, // regexes are anchored
		{[]string{"__name__", "http_requests_total", "code", "503"}, true},
		{[]string{"__name__", "http_requests_total", "code", "200"}, false},
		{[]string{"__name__", "anything", "job", "special"}, true},
		{[]string{"__name__", "go_goroutines"}, false},
	}
	for _, c := range cases {
		_, dropped := p.Apply(toLabels(c.ls...), &State{})
		if (dropped == "") != c.keep || (!c.keep && dropped != ReasonAllowlist) {
			t.Errorf("%v: dropped %q, want keep=%v", c.ls, dropped, c.keep)
		}
	}
	if p, _ := NewPipeline("t", nil, nil, nil, nil, nil); p != nil {
		t.Error("an empty pipeline should be nil: nothing to do")
	}
}

func TestAnonymizer(t *testing.T) {
	secret := []byte("s3cret")
	a, err := NewAnonymizer(secret, 16)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("10.0.0.1:8080"))
	want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
	if got := a.Value("10.0.0.1:8080"); got != want || len(got) != 22 {
		t.Fatalf("Value = %q, want %q (22 characters, 128 bits)", got, want)
	}
	// Stable across instances (and so restarts), different per secret and value.
	b, _ := NewAnonymizer(secret, 16)
	other, _ := NewAnonymizer([]byte("other"), 16)
	if b.Value("10.0.0.1:8080") != want || other.Value("10.0.0.1:8080") == want || a.Value("10.0.0.2:8080") == want {
		t.Fatal("anonymized values are not stable per secret and value")
	}
	if _, err := NewAnonymizer(nil, 16); err == nil {
		t.Fatal("an empty secret was accepted")
	}
	// A cached value costs a lookup: no allocation.
	buf := []byte("pod-7f9c")
	a.Value(string(buf))
	if n := testing.AllocsPerRun(100, func() { a.Value(string(buf)) }); n != 0 {
		t.Fatalf("a cached value allocated %v times", n)
	}
	// The cache keeps its own copy of the key, not the caller's buffer.
	first := a.Value(string(buf))
	copy(buf, "XXXXXXXX")
	if a.Value("pod-7f9c") != first {
		t.Fatal("the cache key aliases the caller's buffer")
	}
}

func TestPipelineOrder(t *testing.T) {
	anon, _ := NewAnonymizer([]byte("k"), 16)
	// The rule copies instance into host; anonymization comes after
	// relabeling, so both end up hashed only if both are listed.
	cfgs := rules(t, `[{source_labels: [instance], target_label: host}]`)
	p, err := NewPipeline("t", []string{`up`}, cfgs, []string{"instance"}, anon, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, dropped := p.Apply(toLabels("__name__", "up", "instance", "a:1"), &State{})
	if dropped != "" {
		t.Fatal(dropped)
	}
	want := fmt.Sprintf("__name__=up,host=a:1,instance=%s", anon.Value("a:1"))
	if render(got) != want {
		t.Fatalf("got %s, want %s", render(got), want)
	}
	if cap(got) <= len(got) {
		t.Fatal("no room left for the cluster label stamp")
	}
}

func TestMemo(t *testing.T) {
	m, err := NewMemo(8)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := NewPipeline("a", []string{"up"}, nil, nil, nil, m)
	b, _ := NewPipeline("b", []string{"up"}, nil, nil, nil, m)
	ls := toLabels("__name__", "up", "job", "x")
	var sa, sb State
	ka, kb := a.Key(ls, &sa), b.Key(ls, &sb)
	if string(ka) == string(kb) {
		t.Fatal("two tenants' keys for the same labels are equal")
	}
	packed := []byte("final-labels")
	m.Store(ka, packed, "")
	copy(packed, "XXXXX") // the caller's buffers are reused...
	ka[len(ka)-1] ^= 0xff // ...and so is the key buffer
	ka = a.Key(ls, &sa)
	if e, ok := m.Lookup(ka); !ok || e.Packed != "final-labels" || e.Dropped != "" {
		t.Fatalf("Lookup = %+v, %v: the memo kept aliases of the caller's buffers", e, ok)
	}
	if _, ok := m.Lookup(kb); ok {
		t.Fatal("tenant b found tenant a's entry")
	}
	if allocs := testing.AllocsPerRun(100, func() { m.Lookup(a.Key(ls, &sa)) }); allocs != 0 {
		t.Fatalf("a memo hit allocated %v times", allocs)
	}
}
