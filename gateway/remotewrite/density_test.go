package remotewrite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/prometheus/prometheus/prompb"
)

// TestDegenerateRequestsAreTooDense: bodies built to decode into far more
// memory than they take (empty series, empty labels) are refused before they
// cost that memory, while prompb would accept them.
func TestDegenerateRequestsAreTooDense(t *testing.T) {
	const n = 2 << 20
	emptySeries := bytes.Repeat([]byte{0x0a, 0x00}, n) // n empty TimeSeries
	inner := bytes.Repeat([]byte{0x0a, 0x00}, n)       // one TimeSeries of n empty labels
	oneSeries := append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(len(inner)))...)
	oneSeries = append(oneSeries, inner...)

	for name, b := range map[string][]byte{"empty series": emptySeries, "empty labels": oneSeries} {
		t.Run(name, func(t *testing.T) {
			var ref prompb.WriteRequest
			if err := ref.Unmarshal(b); err != nil {
				t.Fatalf("the reference decoder rejects it (%v): not a divergence worth testing", err)
			}
			var r Request
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := r.Unmarshal(b)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooDense) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unmarshal = %v, want ErrTooDense (and ErrMalformed)", err)
			}
			budget := uint64(DensityFactor*len(b) + DensitySlack)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*budget {
				t.Fatalf("allocated %d bytes for a %d-byte body; budget %d", alloc, len(b), budget)
			}
			if len(r.Series) != 0 {
				t.Fatal("a refused request left series behind")
			}
		})
	}
}
