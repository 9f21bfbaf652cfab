package relabel

import (
	"testing"

	promrelabel "github.com/prometheus/prometheus/model/relabel"
	"gopkg.in/yaml.v3"

	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
)

// BenchmarkPipeline runs a typical pipeline (five rules, two anonymized
// labels) over the label sets of a 2,000-series request: every series
// computed (cold), and, as the write path does with its memo, looked up.
func BenchmarkPipeline(b *testing.B) {
	var req remotewrite.Request
	if err := req.Unmarshal(remotewritetest.KubernetesBytes(2000, 1)); err != nil {
		b.Fatal(err)
	}
	rules := `[{action: labeldrop, regex: endpoint},
		{source_labels: [pod], regex: '(.+)-[a-z0-9]+-[a-z0-9]+', target_label: workload, replacement: '$1'},
		{action: replace, target_label: env, replacement: prod},
		{action: keep, source_labels: [__name__], regex: '.+'},
		{action: hashmod, source_labels: [instance], modulus: 16, target_label: shard}]`
	anon, err := NewAnonymizer([]byte("bench-secret"), 1<<16)
	if err != nil {
		b.Fatal(err)
	}
	var cfgs []*promrelabel.Config
	if err := yaml.Unmarshal([]byte(rules), &cfgs); err != nil {
		b.Fatal(err)
	}
	p, err := NewPipeline("bench", nil, cfgs, []string{"instance", "node"}, anon, nil)
	if err != nil {
		b.Fatal(err)
	}
	var st State
	scratch := make([]remotewrite.Label, 0, 16)
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range req.Series {
				ls := append(scratch[:0], req.Series[i].Labels...)
				if _, dropped := p.Apply(ls, &st); dropped != "" {
					b.Fatal(dropped)
				}
			}
		}
		b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "series/s")
	})
	memo, _ := NewMemo(1 << 16)
	keys := make([][]byte, len(req.Series))
	for i := range req.Series {
		keys[i] = append([]byte(nil), p.Key(req.Series[i].Labels, &st)...)
		memo.Store(keys[i], []byte("packed"), "")
	}
	b.Run("memo-hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range req.Series {
				if _, ok := memo.Lookup(p.Key(req.Series[i].Labels, &st)); !ok {
					b.Fatal("miss")
				}
			}
		}
		b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "series/s")
	})
}
