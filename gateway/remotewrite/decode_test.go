package remotewrite_test

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
)

// captured returns the snappy-decoded payloads that TestCaptureRealPayloads
// recorded in testdata, by file name.
func captured(t testing.TB) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
	for _, name := range []string{
		"prometheus-agent-1.snappy", "prometheus-agent-2.snappy",
		"vmagent-1.snappy", "vmagent-2.snappy",
	} {
		compressed, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatalf("%v (record it with: go test -run=TestCaptureRealPayloads -capture)", err)
		}
		b, err := snappy.Decode(nil, compressed)
		if err != nil {
			t.Fatalf("%s: snappy: %v", name, err)
		}
		out[name] = b
	}
	return out
}

func TestDifferentialRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var r remotewrite.Request // reused across all payloads on purpose
	for i := range 3000 {
		b := remotewritetest.Random(rng, rng.IntN(20))
		if err := remotewritetest.Diff(&r, b); err != nil {
			t.Fatalf("payload %d (%x): %v", i, b, err)
		}
		// Random only makes what prompb accepts; if that broke, the
		// differential test would compare nothing but error paths.
		if err := new(prompb.WriteRequest).Unmarshal(b); err != nil {
			t.Fatalf("payload %d: generator made an invalid request: %v", i, err)
		}
	}
}

func TestDifferentialKubernetes(t *testing.T) {
	var r remotewrite.Request
	for _, n := range []int{0, 1, 100, 2000} {
		if err := remotewritetest.Diff(&r, remotewritetest.KubernetesBytes(n, 2)); err != nil {
			t.Fatalf("%d series: %v", n, err)
		}
		if len(r.Series) != n {
			t.Fatalf("%d series: decoded %d", n, len(r.Series))
		}
	}
}

func TestDifferentialCaptured(t *testing.T) {
	var r remotewrite.Request
	for name, b := range captured(t) {
		if err := remotewritetest.Diff(&r, b); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		samples := 0
		for _, s := range r.Series {
			samples += len(s.Samples)
		}
		if samples == 0 && r.Metadata == 0 {
			t.Errorf("%s: neither samples nor metadata; a capture should hold one or the other", name)
		}
		t.Logf("%s: %d bytes, %d series, %d samples, %d metadata", name, len(b), len(r.Series), samples, r.Metadata)
	}
}

// TestExactValues pins what the differential tests can only compare: the
// stale marker's payload, ±Inf, negative timestamps and empty series.
func TestExactValues(t *testing.T) {
	stale := math.Float64frombits(remotewritetest.StaleNaN)
	wr := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "up"}}, Samples: []prompb.Sample{
			{Value: stale, Timestamp: -1}, {Value: math.Inf(-1), Timestamp: math.MinInt64}, {Value: math.Inf(1)},
		}},
		{}, // no labels, no samples
		{Labels: []prompb.Label{{Name: "", Value: ""}, {Name: "job", Value: ""}}},
		{Samples: []prompb.Sample{{Value: 1, Timestamp: 2}}},
	}}
	b, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var r remotewrite.Request
	if err := r.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if len(r.Series) != 4 {
		t.Fatalf("got %d series, want 4", len(r.Series))
	}
	s := r.Series[0]
	if got := math.Float64bits(s.Samples[0].Value); got != remotewritetest.StaleNaN || s.Samples[0].Timestamp != -1 {
		t.Errorf("stale marker: got %#x@%d", got, s.Samples[0].Timestamp)
	}
	if !math.IsInf(s.Samples[1].Value, -1) || s.Samples[1].Timestamp != math.MinInt64 {
		t.Errorf("got %v@%d, want -Inf@MinInt64", s.Samples[1].Value, s.Samples[1].Timestamp)
	}
	if !math.IsInf(s.Samples[2].Value, 1) || s.Samples[2].Timestamp != 0 {
		t.Errorf("got %v@%d, want +Inf@0", s.Samples[2].Value, s.Samples[2].Timestamp)
	}
	if n := len(r.Series[1].Labels) + len(r.Series[1].Samples); n != 0 {
		t.Errorf("empty series has %d labels and samples", n)
	}
	if got := r.Series[2].Labels; len(got) != 2 || got[1] != (remotewrite.Label{Name: "job"}) || len(r.Series[2].Samples) != 0 {
		t.Errorf("series 2: got %+v", r.Series[2])
	}
	if got := r.Series[3]; len(got.Labels) != 0 || len(got.Samples) != 1 || got.Samples[0] != (remotewrite.Sample{Value: 1, Timestamp: 2}) {
		t.Errorf("series 3: got %+v", got)
	}
}

// TestReuse decodes payloads of different shapes into one Request, in both
// orders, and checks each result against a fresh Request and the reference.
func TestReuse(t *testing.T) {
	big := remotewritetest.KubernetesBytes(500, 3)
	small := remotewritetest.Random(rand.New(rand.NewPCG(3, 4)), 7)
	var reused remotewrite.Request
	for i, b := range [][]byte{big, small, big, small, nil, big} {
		if err := remotewritetest.Diff(&reused, b); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		var fresh remotewrite.Request
		if err := fresh.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		if !equalRequests(&reused, &fresh) {
			t.Fatalf("step %d: reused request differs from a fresh one", i)
		}
	}
	// A failed decode in between must not leave anything behind either.
	if err := reused.Unmarshal(big[:len(big)-1]); err == nil {
		t.Fatal("truncated payload decoded without error")
	}
	if len(reused.Series) != 0 || reused.Metadata != 0 {
		t.Fatalf("after an error: %d series, %d metadata", len(reused.Series), reused.Metadata)
	}
	if err := remotewritetest.Diff(&reused, small); err != nil {
		t.Fatalf("after an error: %v", err)
	}
}

func equalRequests(a, b *remotewrite.Request) bool {
	if len(a.Series) != len(b.Series) || a.Metadata != b.Metadata {
		return false
	}
	for i := range a.Series {
		sa, sb := a.Series[i], b.Series[i]
		if len(sa.Labels) != len(sb.Labels) || len(sa.Samples) != len(sb.Samples) ||
			sa.Exemplars != sb.Exemplars || sa.Histograms != sb.Histograms {
			return false
		}
		for k := range sa.Labels {
			if sa.Labels[k] != sb.Labels[k] {
				return false
			}
		}
		for k := range sa.Samples {
			x, y := sa.Samples[k], sb.Samples[k]
			if math.Float64bits(x.Value) != math.Float64bits(y.Value) || x.Timestamp != y.Timestamp {
				return false
			}
		}
	}
	return true
}

// TestAppendKeepsNeighbours checks that a caller appending to one series'
// labels (say, to stamp a cluster label) cannot overwrite the next series.
func TestAppendKeepsNeighbours(t *testing.T) {
	var r remotewrite.Request
	if err := r.Unmarshal(remotewritetest.KubernetesBytes(3, 2)); err != nil {
		t.Fatal(err)
	}
	want := append([]remotewrite.Label(nil), r.Series[1].Labels...)
	wantSample := r.Series[1].Samples[0]
	_ = append(r.Series[0].Labels, remotewrite.Label{Name: "cluster_id", Value: "x"})
	_ = append(r.Series[0].Samples, remotewrite.Sample{Value: -1, Timestamp: -1})
	for k, l := range r.Series[1].Labels {
		if l != want[k] {
			t.Fatalf("label %d of series 1 became %+v", k, l)
		}
	}
	if r.Series[1].Samples[0] != wantSample {
		t.Fatalf("sample 0 of series 1 became %+v", r.Series[1].Samples[0])
	}
}

func TestUnmarshalAllocs(t *testing.T) {
	b := remotewritetest.KubernetesBytes(2000, 1)
	var r remotewrite.Request
	if err := r.Unmarshal(b); err != nil { // warm up: grow the pooled slices
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if err := r.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Unmarshal of a warmed 2000-series request: %v allocs, want 0", allocs)
	}
	if len(r.Series) != 2000 {
		t.Fatalf("decoded %d series, want 2000", len(r.Series))
	}
}

func TestErrorsAreMalformedAndShort(t *testing.T) {
	wr := remotewritetest.Kubernetes(20, 1)
	b := marshal(t, wr)
	// Find series 12 and give its first label's name the varint wire type.
	off := len(marshal(t, &prompb.WriteRequest{Timeseries: wr.Timeseries[:12]}))
	_, n := binary.Uvarint(b[off+1:]) // skip the series tag, read its length
	off += 1 + n                      // first label's tag, 0x0a
	if b[off] != 0x0a || b[off+2] != 0x0a {
		t.Fatalf("unexpected layout at %d: % x", off, b[off:off+3])
	}
	b[off+2] = 0x08 // label name: field 1, wire type 0

	var r remotewrite.Request
	err := r.Unmarshal(b)
	if !errors.Is(err, remotewrite.ErrMalformed) {
		t.Fatalf("error %v does not match ErrMalformed", err)
	}
	const want = "decode timeseries 12: label 0: wrong wire type 0 for name"
	if err.Error() != want {
		t.Fatalf("got error %q, want %q", err, want)
	}
	if err := new(prompb.WriteRequest).Unmarshal(b); err == nil {
		t.Fatal("prompb accepts the damaged payload")
	}
}

func marshal(t testing.TB, wr *prompb.WriteRequest) []byte {
	t.Helper()
	b, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLabelBytes pins when a series carries its labels' wire bytes: always
// for what real senders send (labels first, back to back), never when a
// sample sits between two labels, and equal bytes for equal labels in two
// requests.
func TestLabelBytes(t *testing.T) {
	var r remotewrite.Request
	for name, b := range captured(t) {
		if err := r.Unmarshal(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, s := range r.Series {
			if len(s.Labels) > 0 && s.LabelBytes == nil {
				t.Fatalf("%s: series %d has no label bytes", name, i)
			}
		}
	}

	label := func(b []byte, name, value string) []byte {
		var l []byte
		l = protowire(l, 1, []byte(name))
		l = protowire(l, 2, []byte(value))
		return protowire(b, 1, l)
	}
	sample := protowire(nil, 2, []byte{1<<3 | 1, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 2 << 3, 5})
	series := func(parts ...[]byte) []byte {
		var ts []byte
		for _, p := range parts {
			ts = append(ts, p...)
		}
		return protowire(nil, 1, ts)
	}
	a, bb := label(nil, "__name__", "up"), label(nil, "job", "x")
	req := append(series(a, bb, sample), series(a, sample, bb)...)
	req = append(req, series(sample, a, bb)...)
	if err := remotewritetest.Diff(&r, req); err != nil {
		t.Fatal(err)
	}
	if got := string(r.Series[0].LabelBytes); got != string(a)+string(bb) {
		t.Fatalf("labels first: label bytes %x, want %x", got, string(a)+string(bb))
	}
	if r.Series[1].LabelBytes != nil {
		t.Fatal("a sample between labels: label bytes set")
	}
	if string(r.Series[2].LabelBytes) != string(r.Series[0].LabelBytes) {
		t.Fatal("labels after a sample: label bytes differ from the same labels first")
	}
}

// protowire appends a length-delimited field with a one-byte tag.
func protowire(b []byte, field int, v []byte) []byte {
	b = append(b, byte(field<<3|2))
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}
