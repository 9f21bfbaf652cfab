package remotewrite

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unsafe"
)

// Request is a decoded prometheus.WriteRequest. The zero value is ready to
// use. See the package documentation for how long its contents stay valid.
type Request struct {
	// Series are the request's time series in wire order.
	Series []Series
	// Metadata is the number of MetricMetadata entries that were skipped.
	Metadata int

	// labels and samples hold the labels and samples of all series back to
	// back, in wire order; Series[i].Labels and Series[i].Samples are
	// windows into them. They keep their capacity across calls.
	labels  []Label
	samples []Sample
	budget  int // bytes the decoded form may take; see ErrTooDense
}

// Footprint returns the bytes of memory r's slices hold, for a pool that
// must not keep oversized Requests.
func (r *Request) Footprint() int {
	return cap(r.Series)*int(unsafe.Sizeof(Series{})) + cap(r.labels)*int(unsafe.Sizeof(Label{})) + cap(r.samples)*int(unsafe.Sizeof(Sample{}))
}

// room makes room for one more element in the full slice *s, doubling it,
// unless the decoded form would then pass r's density budget. Growing only
// here, by doubling (append grows large slices by 1.25×, copying about 5n
// elements to reach n), keeps what a request allocates to a small multiple
// of its budget, and steady state (pooled capacity) never grows at all.
func room[T any](r *Request, s *[]T) bool {
	var zero T
	n := max(cap(*s), 64)
	if r.used()+n*int(unsafe.Sizeof(zero)) > r.budget {
		return false
	}
	*s = slices.Grow(*s, n)
	return true
}

// used returns the bytes the request decoded so far takes.
func (r *Request) used() int {
	return len(r.Series)*int(unsafe.Sizeof(Series{})) + len(r.labels)*int(unsafe.Sizeof(Label{})) + len(r.samples)*int(unsafe.Sizeof(Sample{}))
}

// Reset empties r and drops every reference into the last input buffer, so a
// pooled Request does not keep that buffer alive. It keeps the capacity.
func (r *Request) Reset() {
	clear(r.labels)
	clear(r.Series)
	r.Series, r.labels, r.samples, r.Metadata = r.Series[:0], r.labels[:0], r.samples[:0], 0
}

// Unmarshal decodes the protobuf encoding of a prometheus.WriteRequest (the
// snappy-decoded body of a remote-write 1.0 push) into r, replacing what r
// held. Strings in the result alias b.
//
// It accepts exactly what prompb.WriteRequest.Unmarshal accepts and yields
// the same labels and samples; every error matches ErrMalformed. After an
// error r is empty.
func (r *Request) Unmarshal(b []byte) error {
	oldLabels, oldSeries := len(r.labels), len(r.Series)
	r.Series, r.labels, r.samples, r.Metadata = r.Series[:0], r.labels[:0], r.samples[:0], 0
	r.budget = DensityFactor*len(b) + DensitySlack
	err := r.decode(b)
	if err != nil {
		oldLabels, oldSeries = max(oldLabels, len(r.labels)), max(oldSeries, len(r.Series))
		r.Series, r.labels, r.samples, r.Metadata = r.Series[:0], r.labels[:0], r.samples[:0], 0
	}
	// Whatever the last call left beyond what this one used still points
	// into the last input buffer; drop it (see Reset).
	clearTail(r.labels, oldLabels)
	clearTail(r.Series, oldSeries)
	if err != nil {
		return err
	}
	r.fixWindows()
	return nil
}

// clearTail zeroes s[len(s):used]. used never exceeds cap(s): a slice only
// ever grows into a larger array.
func clearTail[T any](s []T, used int) {
	if used > len(s) {
		clear(s[len(s):used])
	}
}

// fixWindows points every series at its labels and samples in the final
// flat slices. While decoding, a series' windows were cut from whatever
// array the flat slice had then; a later append may have moved it, so only
// their lengths are trusted here. Each window's capacity ends where it does,
// so appending to one never overwrites the next series.
func (r *Request) fixWindows() {
	var nl, ns int
	for k := range r.Series {
		s := &r.Series[k]
		el, es := nl+len(s.Labels), ns+len(s.Samples)
		s.Labels, s.Samples = r.labels[nl:el:el], r.samples[ns:es:es]
		nl, ns = el, es
	}
}

// The decoder follows the remote-write 1.0 schema (prometheus/prompb
// remote.proto and types.proto, field numbers as on the wire):
//
//	message WriteRequest {
//	  repeated TimeSeries timeseries = 1;
//	  reserved 2;
//	  repeated MetricMetadata metadata = 3;  // validated, counted
//	}
//	message TimeSeries {
//	  repeated Label labels         = 1;
//	  repeated Sample samples       = 2;
//	  repeated Exemplar exemplars   = 3;  // validated, counted
//	  repeated Histogram histograms = 4;  // validated, counted
//	}
//	message Label {
//	  string name  = 1;
//	  string value = 2;
//	}
//	message Sample {
//	  double value    = 1;  // fixed64, IEEE 754 bits kept as sent
//	  int64 timestamp = 2;  // varint, milliseconds
//	}
//
// As in gogo's generated code (prompb.WriteRequest.Unmarshal): fields come in
// any order and repeated fields may interleave; a scalar sent twice keeps
// the last value; a known field with the wrong wire type is an error;
// unknown fields of every wire type, groups included, are skipped; field
// numbers are truncated to int32 before they are looked at. Exemplars,
// histograms and metadata are not decoded but walked with their own schemas
// (wire.go), because gogo rejects a request whose skipped parts are broken.

// decode fills r from b; r starts empty.
func (r *Request) decode(b []byte) error {
	for i := 0; i < len(b); {
		field, wt, next, err := tag(b, i)
		if err != nil {
			return fmt.Errorf("decode tag: %w", err)
		}
		switch field {
		case 1:
			if wt != wireBytes {
				return fmt.Errorf("decode timeseries %d: %w", len(r.Series), errWireType("timeseries", wt))
			}
			from, to, err := span(b, next)
			if err != nil {
				return fmt.Errorf("decode timeseries %d: %w", len(r.Series), err)
			}
			if err := r.decodeSeries(b[from:to]); err != nil {
				return fmt.Errorf("decode timeseries %d: %w", len(r.Series), err)
			}
			i = to
		case 3:
			if wt != wireBytes {
				return fmt.Errorf("decode metadata %d: %w", r.Metadata, errWireType("metadata", wt))
			}
			from, to, err := span(b, next)
			if err == nil {
				err = validate(b[from:to], metadataField)
			}
			if err != nil {
				return fmt.Errorf("decode metadata %d: %w", r.Metadata, err)
			}
			r.Metadata++
			i = to
		default:
			if i, err = skipField(b, i); err != nil {
				return fmt.Errorf("decode field %d: %w", field, err)
			}
		}
	}
	return nil
}

// decodeSeries decodes one TimeSeries message and appends it to r.Series,
// its labels to r.labels and its samples to r.samples.
func (r *Request) decodeSeries(b []byte) error {
	var s Series
	firstLabel, firstSample := len(r.labels), len(r.samples)
	// The label fields' span, while they are back to back.
	lfrom, lto, together := 0, -1, true
	spanLabel := func(from, to int) {
		if lto < 0 {
			lfrom = from
		} else if lto != from {
			together = false
		}
		lto = to
	}
	for i := 0; i < len(b); {
		// Fast path: a label or sample whose tag and length take one byte
		// each and whose fields are encoded the way every sender encodes
		// them. Anything else, valid or not, takes the general path below,
		// which starts over at the same tag.
		if i+1 < len(b) && b[i+1] < 0x80 {
			from, to := i+2, i+2+int(b[i+1])
			if to <= len(b) {
				switch b[i] {
				case 1<<3 | wireBytes:
					if l, ok := canonicalLabel(b[from:to]); ok {
						if len(r.labels) == cap(r.labels) && !room(r, &r.labels) {
							return errTooDense
						}
						r.labels = append(r.labels, l)
						spanLabel(i, to)
						i = to
						continue
					}
				case 2<<3 | wireBytes:
					if smp, ok := canonicalSample(b[from:to]); ok {
						if len(r.samples) == cap(r.samples) && !room(r, &r.samples) {
							return errTooDense
						}
						r.samples = append(r.samples, smp)
						i = to
						continue
					}
				}
			}
		}

		field, wt, next, err := tag(b, i)
		if err != nil {
			return fmt.Errorf("tag: %w", err)
		}
		switch field {
		case 1:
			n := len(r.labels) - firstLabel
			if wt != wireBytes {
				return fmt.Errorf("label %d: %w", n, errWireType("label", wt))
			}
			from, to, err := span(b, next)
			if err != nil {
				return fmt.Errorf("label %d: %w", n, err)
			}
			l, err := decodeLabel(b[from:to])
			if err != nil {
				return fmt.Errorf("label %d: %w", n, err)
			}
			if len(r.labels) == cap(r.labels) && !room(r, &r.labels) {
				return errTooDense
			}
			r.labels = append(r.labels, l)
			spanLabel(i, to)
			i = to
		case 2:
			n := len(r.samples) - firstSample
			if wt != wireBytes {
				return fmt.Errorf("sample %d: %w", n, errWireType("sample", wt))
			}
			from, to, err := span(b, next)
			if err != nil {
				return fmt.Errorf("sample %d: %w", n, err)
			}
			smp, err := decodeSample(b[from:to])
			if err != nil {
				return fmt.Errorf("sample %d: %w", n, err)
			}
			if len(r.samples) == cap(r.samples) && !room(r, &r.samples) {
				return errTooDense
			}
			r.samples = append(r.samples, smp)
			i = to
		case 3:
			if wt != wireBytes {
				return fmt.Errorf("exemplar %d: %w", s.Exemplars, errWireType("exemplar", wt))
			}
			from, to, err := span(b, next)
			if err == nil {
				err = validate(b[from:to], exemplarField)
			}
			if err != nil {
				return fmt.Errorf("exemplar %d: %w", s.Exemplars, err)
			}
			s.Exemplars++
			i = to
		case 4:
			if wt != wireBytes {
				return fmt.Errorf("histogram %d: %w", s.Histograms, errWireType("histogram", wt))
			}
			from, to, err := span(b, next)
			if err == nil {
				err = validate(b[from:to], histogramField)
			}
			if err != nil {
				return fmt.Errorf("histogram %d: %w", s.Histograms, err)
			}
			s.Histograms++
			i = to
		default:
			if i, err = skipField(b, i); err != nil {
				return fmt.Errorf("field %d: %w", field, err)
			}
		}
	}
	// Only the lengths of these windows survive fixWindows.
	s.Labels, s.Samples = r.labels[firstLabel:], r.samples[firstSample:]
	if together && lto >= 0 {
		s.LabelBytes = b[lfrom:lto:lto]
	}
	if len(r.Series) == cap(r.Series) && !room(r, &r.Series) {
		return errTooDense
	}
	r.Series = append(r.Series, s)
	return nil
}

// canonicalLabel decodes a Label message encoded as name (field 1) then
// value (field 2), each with a one-byte length and nothing else, and
// reports whether b had that form. Its strings alias b.
func canonicalLabel(b []byte) (Label, bool) {
	if len(b) < 4 || b[0] != 1<<3|wireBytes || b[1] >= 0x80 {
		return Label{}, false
	}
	v := 2 + int(b[1]) // value tag
	if v+2 > len(b) || b[v] != 2<<3|wireBytes || b[v+1] >= 0x80 || v+2+int(b[v+1]) != len(b) {
		return Label{}, false
	}
	return Label{Name: aliasString(b[2:v]), Value: aliasString(b[v+2:])}, true
}

// canonicalSample decodes a Sample message encoded as value (field 1) then
// timestamp (field 2) and nothing else, and reports whether b had that form.
func canonicalSample(b []byte) (Sample, bool) {
	if len(b) < 11 || b[0] != 1<<3|wireFixed64 || b[9] != 2<<3|wireVarint {
		return Sample{}, false
	}
	ts, end := uvarint(b, 10)
	if end != len(b) {
		return Sample{}, false
	}
	return Sample{Value: math.Float64frombits(binary.LittleEndian.Uint64(b[1:])), Timestamp: int64(ts)}, true
}

// aliasString returns b as a string without copying.
func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// decodeLabel decodes one Label message. Its strings alias b.
func decodeLabel(b []byte) (Label, error) {
	var l Label
	for i := 0; i < len(b); {
		field, wt, next, err := tag(b, i)
		if err != nil {
			return Label{}, fmt.Errorf("tag: %w", err)
		}
		switch field {
		case 1, 2:
			if wt != wireBytes {
				return Label{}, errWireType(labelFieldName(field), wt)
			}
			from, to, err := span(b, next)
			if err != nil {
				return Label{}, fmt.Errorf("%s: %w", labelFieldName(field), err)
			}
			s := aliasString(b[from:to])
			if field == 1 {
				l.Name = s
			} else {
				l.Value = s
			}
			i = to
		default:
			if i, err = skipField(b, i); err != nil {
				return Label{}, fmt.Errorf("field %d: %w", field, err)
			}
		}
	}
	return l, nil
}

func labelFieldName(field int32) string {
	if field == 1 {
		return "name"
	}
	return "value"
}

// decodeSample decodes one Sample message.
func decodeSample(b []byte) (Sample, error) {
	var s Sample
	for i := 0; i < len(b); {
		field, wt, next, err := tag(b, i)
		if err != nil {
			return Sample{}, fmt.Errorf("tag: %w", err)
		}
		switch field {
		case 1:
			if wt != wireFixed64 {
				return Sample{}, errWireType("value", wt)
			}
			if len(b)-next < 8 {
				return Sample{}, fmt.Errorf("value: %w", errTruncated)
			}
			s.Value = math.Float64frombits(binary.LittleEndian.Uint64(b[next:]))
			i = next + 8
		case 2:
			if wt != wireVarint {
				return Sample{}, errWireType("timestamp", wt)
			}
			v, after := uvarint(b, next)
			if after < 0 {
				return Sample{}, fmt.Errorf("timestamp: %w", posErr(after))
			}
			s.Timestamp = int64(v)
			i = after
		default:
			if i, err = skipField(b, i); err != nil {
				return Sample{}, fmt.Errorf("field %d: %w", field, err)
			}
		}
	}
	return s, nil
}
