package remotewrite

import "fmt"

// Protobuf wire types.
const (
	wireVarint     = 0
	wireFixed64    = 1
	wireBytes      = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

// Negative positions returned by uvarint instead of an error, so that the
// hot path returns two words and inlines.
const (
	posTruncated = -1
	posOverflow  = -2
)

// posErr turns a negative position from uvarint into its error.
func posErr(pos int) error {
	if pos == posOverflow {
		return errOverflow
	}
	return errTruncated
}

// uvarint reads the base-128 varint at b[i:] and returns it with the
// position just past it, or a negative position (posTruncated, posOverflow).
// Like gogo's generated code it reads at most 10 bytes and drops bits beyond
// the 64th without complaint: a non-minimal encoding is accepted.
func uvarint(b []byte, i int) (uint64, int) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1
	}
	return uvarintSlow(b, i)
}

// uvarintSlow is kept out of line so that uvarint inlines.
//
//go:noinline
func uvarintSlow(b []byte, i int) (uint64, int) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= len(b) {
			return 0, posTruncated
		}
		c := b[i]
		i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i
		}
	}
	return 0, posOverflow
}

// tag reads the field tag at b[i:] and splits it the way gogo does: the field
// number is truncated to int32, and an end-group tag or a field number <= 0
// is illegal outside a group. It returns the position after the tag.
func tag(b []byte, i int) (field int32, wt uint64, next int, err error) {
	t, next := uvarint(b, i)
	if next < 0 {
		return 0, 0, 0, posErr(next)
	}
	field, wt = int32(t>>3), t&7
	if wt == wireEndGroup || field <= 0 {
		return 0, 0, 0, errTag(t)
	}
	return field, wt, next, nil
}

// span reads the length prefix at b[i:] and returns where the bytes it
// announces start and end.
func span(b []byte, i int) (start, end int, err error) {
	n, start := uvarint(b, i)
	if start < 0 {
		return 0, 0, posErr(start)
	}
	if int(n) < 0 {
		return 0, 0, errLength
	}
	if int(n) > len(b)-start {
		return 0, 0, errTruncated
	}
	return start, start + int(n), nil
}

// skipField returns the position just past the field whose tag starts at
// b[i:], for a field the schema does not know. It mirrors gogo's skipTypes:
// groups (wire types 3 and 4) nest to any depth, their field numbers are not
// checked or matched, and anything that ends past b is an error.
func skipField(b []byte, i int) (int, error) {
	depth := 0
	for i < len(b) {
		t, next := uvarint(b, i)
		if next < 0 {
			return 0, posErr(next)
		}
		i = next
		switch wt := t & 7; wt {
		case wireVarint:
			if _, i = uvarint(b, i); i < 0 {
				return 0, posErr(i)
			}
		case wireFixed64:
			i += 8
		case wireBytes:
			n, next := uvarint(b, i)
			if next < 0 {
				return 0, posErr(next)
			}
			if int(n) < 0 {
				return 0, errLength
			}
			if int(n) > len(b)-next {
				return 0, errTruncated
			}
			i = next + int(n)
		case wireStartGroup:
			depth++
		case wireEndGroup:
			if depth == 0 {
				return 0, errEndGroup
			}
			depth--
		case wireFixed32:
			i += 4
		default:
			return 0, errIllegalWireType(wt)
		}
		if depth == 0 {
			if i > len(b) {
				return 0, errTruncated
			}
			return i, nil
		}
	}
	return 0, errTruncated
}

// fieldKind is what a schema expects of a field of a message that is only
// validated, never decoded: exemplars, histograms and metadata. gogo decodes
// them in full, so to reject exactly what it rejects they are walked with
// the same wire-type rules.
type fieldKind uint8

const (
	kindUnknown       fieldKind = iota // skipped like any unknown field
	kindVarint                         // wire type 0
	kindFixed64                        // wire type 1
	kindBytes                          // wire type 2, contents unchecked (string)
	kindLabel                          // wire type 2, an embedded Label
	kindBucketSpan                     // wire type 2, an embedded BucketSpan
	kindPackedVarint                   // repeated varint: wire type 0, or 2 packed
	kindPackedFixed64                  // repeated double: wire type 1, or 2 packed
)

// schema maps a field number to its kind.
type schema func(field int32) fieldKind

// exemplarField is the schema of
//
//	message Exemplar {
//	  repeated Label labels = 1;
//	  double value = 2;
//	  int64 timestamp = 3;
//	}
func exemplarField(field int32) fieldKind {
	switch field {
	case 1:
		return kindLabel
	case 2:
		return kindFixed64
	case 3:
		return kindVarint
	}
	return kindUnknown
}

// histogramField is the schema of
//
//	message Histogram {
//	  oneof count { uint64 count_int = 1; double count_float = 2; }
//	  double sum = 3;
//	  sint32 schema = 4;
//	  double zero_threshold = 5;
//	  oneof zero_count { uint64 zero_count_int = 6; double zero_count_float = 7; }
//	  repeated BucketSpan negative_spans = 8;
//	  repeated sint64 negative_deltas = 9;
//	  repeated double negative_counts = 10;
//	  repeated BucketSpan positive_spans = 11;
//	  repeated sint64 positive_deltas = 12;
//	  repeated double positive_counts = 13;
//	  ResetHint reset_hint = 14;
//	  int64 timestamp = 15;
//	  repeated double custom_values = 16;
//	}
func histogramField(field int32) fieldKind {
	switch field {
	case 1, 4, 6, 14, 15:
		return kindVarint
	case 2, 3, 5, 7:
		return kindFixed64
	case 8, 11:
		return kindBucketSpan
	case 9, 12:
		return kindPackedVarint
	case 10, 13, 16:
		return kindPackedFixed64
	}
	return kindUnknown
}

// bucketSpanField is the schema of
//
//	message BucketSpan {
//	  sint32 offset = 1;
//	  uint32 length = 2;
//	}
func bucketSpanField(field int32) fieldKind {
	switch field {
	case 1, 2:
		return kindVarint
	}
	return kindUnknown
}

// metadataField is the schema of
//
//	message MetricMetadata {
//	  MetricType type = 1;
//	  string metric_family_name = 2;
//	  string help = 4;
//	  string unit = 5;
//	}
func metadataField(field int32) fieldKind {
	switch field {
	case 1:
		return kindVarint
	case 2, 4, 5:
		return kindBytes
	}
	return kindUnknown
}

// labelField is the schema of
//
//	message Label {
//	  string name  = 1;
//	  string value = 2;
//	}
//
// Only used for exemplar labels; series labels are decoded by decodeLabel.
func labelField(field int32) fieldKind {
	switch field {
	case 1, 2:
		return kindBytes
	}
	return kindUnknown
}

// validate walks the message b with the wire-type rules of kindOf and
// reports the first thing gogo would reject.
func validate(b []byte, kindOf schema) error {
	for i := 0; i < len(b); {
		field, wt, next, err := tag(b, i)
		if err != nil {
			return fmt.Errorf("tag: %w", err)
		}
		if i, err = validateField(b, i, next, field, wt, kindOf(field)); err != nil {
			return fmt.Errorf("field %d: %w", field, err)
		}
	}
	return nil
}

// validateField checks one field whose tag starts at b[start:] and whose
// value starts at b[i:], and returns the position after it.
func validateField(b []byte, start, i int, field int32, wt uint64, kind fieldKind) (int, error) {
	switch kind {
	case kindUnknown:
		return skipField(b, start)
	case kindVarint:
		if wt != wireVarint {
			return 0, errWireType("varint field", wt)
		}
		if _, i = uvarint(b, i); i < 0 {
			return 0, posErr(i)
		}
		return i, nil
	case kindFixed64:
		if wt != wireFixed64 {
			return 0, errWireType("double field", wt)
		}
		if len(b)-i < 8 {
			return 0, errTruncated
		}
		return i + 8, nil
	case kindBytes, kindLabel, kindBucketSpan:
		if wt != wireBytes {
			return 0, errWireType("length-delimited field", wt)
		}
		from, to, err := span(b, i)
		if err != nil {
			return 0, err
		}
		switch kind {
		case kindLabel:
			err = validate(b[from:to], labelField)
		case kindBucketSpan:
			err = validate(b[from:to], bucketSpanField)
		}
		return to, err
	case kindPackedVarint:
		switch wt {
		case wireVarint:
			if _, i = uvarint(b, i); i < 0 {
				return 0, posErr(i)
			}
			return i, nil
		case wireBytes:
			from, to, err := span(b, i)
			if err != nil {
				return 0, err
			}
			// gogo bounds each element by the end of the enclosing
			// message, not of the packed run: a last element may run past
			// the run, and decoding resumes wherever it ended.
			for i = from; i < to; {
				if _, i = uvarint(b, i); i < 0 {
					return 0, posErr(i)
				}
			}
			return i, nil
		}
		return 0, errWireType("repeated varint field", wt)
	case kindPackedFixed64:
		switch wt {
		case wireFixed64:
			if len(b)-i < 8 {
				return 0, errTruncated
			}
			return i + 8, nil
		case wireBytes:
			from, to, err := span(b, i)
			if err != nil {
				return 0, err
			}
			// Same quirk as above: a run whose length is not a multiple
			// of 8 borrows bytes from what follows it.
			for i = from; i < to; i += 8 {
				if len(b)-i < 8 {
					return 0, errTruncated
				}
			}
			return i, nil
		}
		return 0, errWireType("repeated double field", wt)
	}
	panic(fmt.Sprintf("remotewrite: unknown field kind %d", kind))
}
