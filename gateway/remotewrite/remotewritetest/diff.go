package remotewritetest

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/gateway/remotewrite"
)

// Diff decodes b with the reference, prompb.WriteRequest.Unmarshal, and with
// r, and returns the first way they disagree, or nil when they agree:
//
//   - both accept b or both reject it;
//   - a rejection by r matches remotewrite.ErrMalformed and leaves r empty;
//   - on acceptance, the same series in the same order, each with the same
//     labels in the same order, the same samples (timestamps, and value bits,
//     so NaN payloads count) and as many exemplars and histograms; as many
//     metadata entries;
//   - every non-empty label string of r points into b (zero copy), and no
//     series' label or sample window has room to grow into the next one.
func Diff(r *remotewrite.Request, b []byte) error {
	var want prompb.WriteRequest
	wantErr := want.Unmarshal(b)
	gotErr := r.Unmarshal(b)
	switch {
	case wantErr != nil && gotErr != nil:
		if !errors.Is(gotErr, remotewrite.ErrMalformed) {
			return fmt.Errorf("error %q does not match ErrMalformed", gotErr)
		}
		if len(r.Series) != 0 || r.Metadata != 0 {
			return fmt.Errorf("after error %q the request still holds %d series, %d metadata", gotErr, len(r.Series), r.Metadata)
		}
		return nil
	case wantErr != nil:
		return fmt.Errorf("prompb rejects (%v), remotewrite accepts", wantErr)
	case gotErr != nil && errors.Is(gotErr, remotewrite.ErrTooDense):
		// The one deliberate difference: a request whose decoded form is
		// over the density budget. Only allowed when it really is.
		if footprint(&want) <= remotewrite.DensityFactor*len(b)+remotewrite.DensitySlack {
			return fmt.Errorf("rejected as too dense, but decodes to only %d bytes from %d", footprint(&want), len(b))
		}
		return nil
	case gotErr != nil:
		return fmt.Errorf("prompb accepts, remotewrite rejects: %v", gotErr)
	}

	if got, want := r.Metadata, len(want.Metadata); got != want {
		return fmt.Errorf("metadata: got %d, want %d", got, want)
	}
	if got, want := len(r.Series), len(want.Timeseries); got != want {
		return fmt.Errorf("series: got %d, want %d", got, want)
	}
	for i, ws := range want.Timeseries {
		if err := diffSeries(&r.Series[i], &ws, b); err != nil {
			return fmt.Errorf("series %d: %w", i, err)
		}
	}
	return nil
}

// footprint is what decoding wr takes in remotewrite's own types.
func footprint(wr *prompb.WriteRequest) int {
	n := len(wr.Timeseries) * int(unsafe.Sizeof(remotewrite.Series{}))
	for _, ts := range wr.Timeseries {
		n += len(ts.Labels)*int(unsafe.Sizeof(remotewrite.Label{})) + len(ts.Samples)*int(unsafe.Sizeof(remotewrite.Sample{}))
	}
	return n
}

func diffSeries(got *remotewrite.Series, want *prompb.TimeSeries, b []byte) error {
	if len(got.Labels) != len(want.Labels) {
		return fmt.Errorf("labels: got %d, want %d", len(got.Labels), len(want.Labels))
	}
	if cap(got.Labels) != len(got.Labels) || cap(got.Samples) != len(got.Samples) {
		return fmt.Errorf("window capacity: labels %d/%d, samples %d/%d",
			len(got.Labels), cap(got.Labels), len(got.Samples), cap(got.Samples))
	}
	for k, wl := range want.Labels {
		gl := got.Labels[k]
		if gl.Name != wl.Name || gl.Value != wl.Value {
			return fmt.Errorf("label %d: got %q=%q, want %q=%q", k, gl.Name, gl.Value, wl.Name, wl.Value)
		}
		if !inside(gl.Name, b) || !inside(gl.Value, b) {
			return fmt.Errorf("label %d: %q=%q does not alias the input", k, gl.Name, gl.Value)
		}
	}
	if got.LabelBytes != nil {
		// The span must be the labels alone: decoded as a TimeSeries of
		// its own, it gives exactly these labels.
		var ts prompb.TimeSeries
		if err := ts.Unmarshal(got.LabelBytes); err != nil {
			return fmt.Errorf("label bytes do not decode: %v", err)
		}
		if len(ts.Labels) != len(want.Labels) || len(ts.Samples) != 0 || len(ts.Exemplars) != 0 || len(ts.Histograms) != 0 {
			return fmt.Errorf("label bytes hold %d labels, %d samples, %d exemplars, %d histograms; want %d labels alone",
				len(ts.Labels), len(ts.Samples), len(ts.Exemplars), len(ts.Histograms), len(want.Labels))
		}
		for k, wl := range want.Labels {
			if ts.Labels[k].Name != wl.Name || ts.Labels[k].Value != wl.Value {
				return fmt.Errorf("label bytes' label %d: %q=%q, want %q=%q", k, ts.Labels[k].Name, ts.Labels[k].Value, wl.Name, wl.Value)
			}
		}
		if !inside(unsafe.String(unsafe.SliceData(got.LabelBytes), len(got.LabelBytes)), b) {
			return fmt.Errorf("label bytes do not alias the input")
		}
	}
	if len(got.Samples) != len(want.Samples) {
		return fmt.Errorf("samples: got %d, want %d", len(got.Samples), len(want.Samples))
	}
	for k, ws := range want.Samples {
		gs := got.Samples[k]
		if gs.Timestamp != ws.Timestamp || math.Float64bits(gs.Value) != math.Float64bits(ws.Value) {
			return fmt.Errorf("sample %d: got %#x@%d, want %#x@%d", k,
				math.Float64bits(gs.Value), gs.Timestamp, math.Float64bits(ws.Value), ws.Timestamp)
		}
	}
	if got.Exemplars != len(want.Exemplars) {
		return fmt.Errorf("exemplars: got %d, want %d", got.Exemplars, len(want.Exemplars))
	}
	if got.Histograms != len(want.Histograms) {
		return fmt.Errorf("histograms: got %d, want %d", got.Histograms, len(want.Histograms))
	}
	return nil
}

// inside reports whether s is empty or lies within b.
func inside(s string, b []byte) bool {
	if s == "" {
		return true
	}
	if len(b) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(b))
}
