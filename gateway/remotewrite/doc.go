// Package remotewrite decodes Prometheus remote-write 1.0 requests
// (prometheus.WriteRequest) without allocating per series.
//
// It owns the wire format only: it never validates label names, sorts labels
// or touches storage. Those are the caller's job.
//
// Validity: every string in a decoded Request points into the byte slice that
// was passed to Unmarshal (zero-copy), and every slice is owned by the
// Request and reused by the next Unmarshal. Decoded values are therefore only
// valid until the next call to Unmarshal or Reset on the same Request, and
// only while the input buffer is neither modified nor reused. A caller that
// keeps a string beyond that must copy or intern it.
//
// A Request is not safe for concurrent use; pool Requests, one per request
// being served.
//
// # Usage
//
//	var r remotewrite.Request // pooled; the zero value is ready
//	if err := r.Unmarshal(raw); err != nil { // raw: the snappy-decoded body
//		// errors.Is(err, remotewrite.ErrMalformed): answer 400 with err.Error()
//	}
//	for _, s := range r.Series {
//		// s.Labels in wire order, unsorted, possibly duplicated or empty;
//		// s.Samples in wire order; s.Histograms, s.Exemplars: counts only.
//	}
//	r.Reset() // before pooling: drops every reference into raw
//
// Labels and samples of all series sit back to back in two slices owned by
// the Request; each Series[i].Labels and Series[i].Samples is a window into
// them whose capacity equals its length, so appending to one (say, a cluster
// label) copies it instead of overwriting the next series. Once warmed to
// the largest request seen, Unmarshal allocates nothing (guarded by
// TestUnmarshalAllocs).
//
// # What is accepted
//
// Exactly what prompb.WriteRequest.Unmarshal (gogo-generated) accepts: the
// package is tested differentially against it on generated, captured
// (testdata/, from a real Prometheus Agent and vmagent), truncated, damaged
// and fuzzed inputs. That includes gogo's leniencies, which are kept on
// purpose so that fedgate never rejects what Prometheus itself would read:
//
//   - fields in any order, repeated fields interleaved, and a scalar field
//     sent twice keeps its last value (Label name/value, Sample
//     value/timestamp);
//   - unknown fields of wire types 0, 1, 2, 5 and groups (3...4, nested,
//     with end tags whose field numbers are never matched) are skipped,
//     including the reserved WriteRequest field 2;
//   - varints may be non-minimal, up to 10 bytes, and bits past the 64th are
//     dropped rather than rejected;
//   - field numbers are truncated to int32 before they are looked at, so
//     field 2^32+1 is field 1;
//   - strings are not checked to be UTF-8;
//   - in a packed repeated field of a histogram, the last element may run
//     past the packed length into the bytes after it, and decoding resumes
//     where it ended.
//
// Exemplars, native histograms and metadata are not decoded, but they are
// walked with their schemas (wire.go), because gogo decodes them in full and
// rejects a request whose exemplar, histogram or metadata is broken. Their
// contents are not checked beyond the wire format (a histogram's spans need
// not match its buckets), just as gogo does not check them.
//
// Errors match ErrMalformed and read like
// "decode timeseries 12: label 3: unexpected EOF".
package remotewrite
