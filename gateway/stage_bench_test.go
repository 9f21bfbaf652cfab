package gateway

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/golang/snappy"

	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
	"github.com/fedgate/fedgate/wal/codec"
)

// BenchmarkReadBody is the first stage: reading a 2,000-series body through
// the limit and snappy-decoding it.
func BenchmarkReadBody(b *testing.B) {
	raw := remotewritetest.KubernetesBytes(2000, 1)
	body := snappy.Encode(nil, raw)
	var buf, out []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var err error
		if buf, err = codec.ReadLimited(buf[:0], bytes.NewReader(body), int64(len(body)), 1<<24); err != nil {
			b.Fatal(err)
		}
		n, _ := snappy.DecodedLen(buf)
		if cap(out) < n {
			out = make([]byte, n)
		}
		if out, err = snappy.Decode(out[:cap(out)], buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkValidate is stamping, sorting, validating and packing the label
// sets of a 2,000-series request (no pipeline).
func BenchmarkValidate(b *testing.B) {
	var req remotewrite.Request
	if err := req.Unmarshal(remotewritetest.KubernetesBytes(2000, 1)); err != nil {
		b.Fatal(err)
	}
	s, err := NewSettings(testConfig(b))
	if err != nil {
		b.Fatal(err)
	}
	lim := s.limits("cluster-a")
	st := &writeState{input: new(input)}
	b.ReportAllocs()
	for b.Loop() {
		st.packed = st.packed[:0]
		for i := range req.Series {
			if out := s.resolve(st, "cluster-a", lim, req.Series[i].Labels); out.reason != "" {
				b.Fatal(fmt.Sprint(out.reason, out.msg))
			}
		}
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "series/s")
}
