package remotewrite

import (
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/prompb"
)

// TestNoReferencesIntoOldInput checks that nothing a Request keeps beyond
// what its last result uses still points into an earlier input buffer:
// after a smaller request, after an error and after Reset.
func TestNoReferencesIntoOldInput(t *testing.T) {
	build := func(series int) []byte {
		wr := prompb.WriteRequest{}
		for i := range series {
			wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
				Labels:  []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "i", Value: fmt.Sprint(i)}},
				Samples: []prompb.Sample{{Value: 1, Timestamp: 1}},
			})
		}
		b, err := wr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	big, small := build(50), build(2)
	var r Request

	assertClean := func(step string) {
		t.Helper()
		for i, l := range r.labels[len(r.labels):cap(r.labels)] {
			if l != (Label{}) {
				t.Fatalf("%s: unused label slot %d still holds %+v", step, len(r.labels)+i, l)
			}
		}
		for i, s := range r.Series[len(r.Series):cap(r.Series)] {
			if s.Labels != nil || s.Samples != nil {
				t.Fatalf("%s: unused series slot %d still holds %+v", step, len(r.Series)+i, s)
			}
		}
	}

	mustDecode := func(b []byte) {
		t.Helper()
		if err := r.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
	}
	mustDecode(big)
	mustDecode(small)
	if len(r.labels) != 4 || len(r.Series) != 2 {
		t.Fatalf("got %d labels, %d series; want 4, 2", len(r.labels), len(r.Series))
	}
	assertClean("big then small")

	mustDecode(big)
	if err := r.Unmarshal(big[:len(big)-1]); err == nil {
		t.Fatal("truncated payload decoded without error")
	}
	if len(r.labels) != 0 || len(r.samples) != 0 || len(r.Series) != 0 {
		t.Fatalf("after an error: %d labels, %d samples, %d series", len(r.labels), len(r.samples), len(r.Series))
	}
	assertClean("after an error")

	mustDecode(big)
	r.Reset()
	if len(r.Series) != 0 || r.Metadata != 0 || cap(r.labels) == 0 {
		t.Fatalf("after Reset: %d series, %d metadata, label capacity %d", len(r.Series), r.Metadata, cap(r.labels))
	}
	assertClean("after Reset")
}
