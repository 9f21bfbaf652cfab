package fuzz

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promrelabel "github.com/prometheus/prometheus/model/relabel"

	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/relabel"
	"github.com/fedgate/fedgate/wal/head"
)

// maxRelabelInput caps FuzzRelabelAnonymize inputs.
const maxRelabelInput = 1 << 20

// relabelRules exercise regex captures, hashmod, keep, labelmap,
// labeldrop, lowercase and the removal of __name__.
const relabelRules = `
relabel_configs:
  - {source_labels: [pod], regex: '(.+)-([a-z0-9]+)', target_label: deployment, replacement: '$1'}
  - {source_labels: [__name__, job], separator: ';', regex: '(.*)_total;(.+)', target_label: __name__, replacement: '${2}:${1}'}
  - {source_labels: [instance], modulus: 4, target_label: __tmp_shard, action: hashmod}
  - {source_labels: [__tmp_shard], regex: '3', action: drop}
  - {regex: '__meta_(.+)', replacement: 'meta_$1', action: labelmap}
  - {regex: '__meta_.*|__tmp_.*|drop_.*', action: labeldrop}
  - {source_labels: [env], target_label: env, action: lowercase}
  - {source_labels: [unname], regex: 'yes', target_label: __name__, replacement: ''}
tenants:
  - {id: t, token: x}
`

// relabelSecret keys the anonymizer; anonymizedLabels are the labels it
// replaces, some of them created by the rules.
var (
	relabelSecret    = []byte("fuzz-secret")
	anonymizedLabels = []string{"instance", "pod", "deployment", "meta_user"}
)

// Label names the fuzzed sets draw from, for the rules to act on; others
// are read from the input.
var relabelNames = []string{"__name__", "pod", "job", "instance", "__meta_user", "__meta_zone", "env", "unname", "drop_me", "deployment", "meta_user", "__tmp_shard"}

// FuzzRelabelAnonymize runs arbitrary label sets (valid names, arbitrary
// values) through a pipeline of several relabel rules and anonymization.
// It must never panic and must agree with Prometheus' relabel.Process on
// the same input followed by replacing the anonymized labels' values with
// base64url(HMAC-SHA256(secret, value)[:16]), computed here with
// crypto/hmac: the same labels, or a drop when Process drops the series or
// leaves it without a name. The memo must then give the same result for
// the same input, and so must a second Apply, which the anonymizer's cache
// answers.
func FuzzRelabelAnonymize(f *testing.F) {
	f.Add([]byte("\x00\x08requests_total\x02\x04api\x01\x0cweb-7f9c4d-x\x03\x0b10.0.0.1:80"))
	f.Add([]byte("\x00\x02up\x04\x05alice\x05\x04eu-1\x06\x04PROD\x08\x01x"))
	f.Add([]byte("\x00\x01m\x07\x03yes\x80\x03abc\x01\x01-"))
	f.Add([]byte("\x00\x03a_b\x03\xff\xfe\xe2\x82\x0b\x01\x02-\xc3"))
	f.Add([]byte{})

	cfg, err := config.Parse([]byte(relabelRules))
	if err != nil {
		f.Fatal(err)
	}
	rules := cfg.RelabelConfigs
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxRelabelInput {
			t.Skip("input over the size cap")
		}
		in := fuzzedLabels(b)
		anon, err := relabel.NewAnonymizer(relabelSecret, 64)
		if err != nil {
			t.Fatal(err)
		}
		memo, err := relabel.NewMemo(64)
		if err != nil {
			t.Fatal(err)
		}
		p, err := relabel.NewPipeline("t", nil, rules, anonymizedLabels, anon, memo)
		if err != nil {
			t.Fatal(err)
		}
		want, wantDropped := referenceRelabel(in, rules)

		var st relabel.State
		key := slices.Clone(p.Key(in, &st))
		if _, ok := p.Memo().Lookup(key); ok {
			t.Fatal("memo hit before anything was stored")
		}
		got, dropped := p.Apply(slices.Clone(in), &st)
		checkRelabel(t, "first Apply", got, dropped, want, wantDropped)
		packed := packLabels(sortedLabels(got))
		if dropped != "" {
			packed = nil
		}
		p.Memo().Store(key, packed, dropped)

		e, ok := p.Memo().Lookup(p.Key(in, &st))
		if !ok || e.Dropped != dropped || e.Packed != string(packed) {
			t.Fatalf("memo gives %+v (found: %v), want packed %q dropped %q", e, ok, packed, dropped)
		}
		got, dropped = p.Apply(slices.Clone(in), &st)
		checkRelabel(t, "second Apply", got, dropped, want, wantDropped)
	})
}

// fuzzedLabels reads a label set out of b: per label a name (an index into
// relabelNames, or with the top bit set a valid name of its own) and a
// value of arbitrary bytes. It returns the set as the write path hands it
// to a pipeline: empty values left out, sorted, names unique.
func fuzzedLabels(b []byte) []remotewrite.Label {
	r := &byteReader{b: b}
	var ls []remotewrite.Label
	for len(r.b) > 0 && len(ls) < 64 {
		c := r.next()
		name := relabelNames[int(c)%len(relabelNames)]
		if c >= 0x80 {
			name = r.name(labelChars)
			if name[0] >= '0' && name[0] <= '9' {
				name = "_" + name
			}
		}
		v := string(r.bytes(int(r.next()) % 32))
		if v == "" || slices.ContainsFunc(ls, func(l remotewrite.Label) bool { return l.Name == name }) {
			continue
		}
		ls = append(ls, remotewrite.Label{Name: name, Value: v})
	}
	slices.SortFunc(ls, func(a, b remotewrite.Label) int { return strings.Compare(a.Name, b.Name) })
	return ls
}

// referenceRelabel is relabel.Process, then the anonymization, computed
// afresh.
func referenceRelabel(in []remotewrite.Label, rules []*promrelabel.Config) ([]remotewrite.Label, bool) {
	lb := labels.NewScratchBuilder(len(in))
	for _, l := range in {
		lb.Add(strings.Clone(l.Name), strings.Clone(l.Value))
	}
	lb.Sort()
	res, keep := promrelabel.Process(lb.Labels(), rules...)
	if !keep || res.Get(labels.MetricName) == "" {
		return nil, true
	}
	var out []remotewrite.Label
	res.Range(func(l labels.Label) {
		v := l.Value
		if slices.Contains(anonymizedLabels, l.Name) {
			mac := hmac.New(sha256.New, relabelSecret)
			mac.Write([]byte(v))
			v = base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:relabel.AnonymizedBytes])
		}
		out = append(out, remotewrite.Label{Name: l.Name, Value: v})
	})
	return out, false
}

func checkRelabel(t *testing.T, what string, got []remotewrite.Label, dropped string, want []remotewrite.Label, wantDropped bool) {
	t.Helper()
	switch {
	case wantDropped && dropped != relabel.ReasonRelabel:
		t.Fatalf("%s: kept %v (dropped %q), Prometheus drops it", what, got, dropped)
	case !wantDropped && dropped != "":
		t.Fatalf("%s: dropped (%s), Prometheus keeps %v", what, dropped, want)
	case !wantDropped && !slices.Equal(sortedLabels(got), want):
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

// sortedLabels returns ls sorted by name: Apply promises no order (labels
// a rule adds come last; the write path sorts after stamping), Process
// sorts.
func sortedLabels(ls []remotewrite.Label) []remotewrite.Label {
	return slices.SortedFunc(slices.Values(ls), func(a, b remotewrite.Label) int { return strings.Compare(a.Name, b.Name) })
}

func packLabels(ls []remotewrite.Label) []byte {
	var b []byte
	for _, l := range ls {
		b = head.AppendLabel(b, l.Name, l.Value)
	}
	return b
}
