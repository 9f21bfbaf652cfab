package gateway

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/wal/head"
)

// Reasons a sample is discarded; the values of the reason label of
// fedgate_discarded_samples_total.
const (
	reasonMissingName      = "missing_metric_name"
	reasonInvalidName      = "invalid_metric_name"
	reasonInvalidLabel     = "invalid_label_name"
	reasonDuplicateLabel   = "duplicate_label_name"
	reasonInvalidUTF8      = "invalid_utf8"
	reasonTooManyLabels    = "too_many_labels"
	reasonNameTooLong      = "label_name_too_long"
	reasonValueTooLong     = "label_value_too_long"
	reasonTooFarInFuture   = "too_far_in_future"
	reasonNativeHistograms = "native_histogram_unsupported"
	reasonRateLimited      = "rate_limited"
	reasonSeriesLimit      = "series_limit"
)

// maxFuture is how far ahead of the gateway's clock a sample may be.
const maxFuture = 10 * 60 * 1000 // milliseconds

// sortLabels sorts by name with an insertion sort: labels usually arrive
// sorted but for the stamped cluster label, which makes this about one pass
// and a short shift, and it allocates nothing. Long label sets (only a
// raised max_labels_per_series admits them) take slices.SortFunc.
func sortLabels(ls []remotewrite.Label) {
	if len(ls) > 64 {
		slices.SortFunc(ls, func(a, b remotewrite.Label) int { return strings.Compare(a.Name, b.Name) })
		return
	}
	for i := 1; i < len(ls); i++ {
		if !nameLess(ls[i].Name, ls[i-1].Name) {
			continue
		}
		l, j := ls[i], i
		for ; j > 0 && nameLess(l.Name, ls[j-1].Name); j-- {
			ls[j] = ls[j-1]
		}
		ls[j] = l
	}
}

// nameLess is a < b, deciding on the first byte without a call when it can:
// label names of one series rarely share it.
func nameLess(a, b string) bool {
	if a != "" && b != "" && a[0] != b[0] {
		return a[0] < b[0]
	}
	return a < b
}

// packValid validates a sorted, stamped label set and appends it to dst in
// head.Labels form, in one pass. When the set is invalid it returns dst as
// it was, the reason and a message.
func packValid(dst []byte, ls []remotewrite.Label, lim *config.Limits) (_ []byte, reason, msg string) {
	orig := len(dst)
	hasName := false
	for i, l := range ls {
		if len(l.Name) > lim.MaxLabelNameLength {
			return dst[:orig], reasonNameTooLong, fmt.Sprintf("label name of %d bytes, more than the limit of %d", len(l.Name), lim.MaxLabelNameLength)
		}
		if len(l.Value) > lim.MaxLabelValueLength {
			return dst[:orig], reasonValueTooLong, fmt.Sprintf("label %s has a value of %d bytes, more than the limit of %d", quoteName(l.Name), len(l.Value), lim.MaxLabelValueLength)
		}
		if !validLabelName(l.Name) {
			return dst[:orig], reasonInvalidLabel, "invalid label name " + quoteName(l.Name)
		}
		if i > 0 && l.Name == ls[i-1].Name {
			return dst[:orig], reasonDuplicateLabel, "duplicate label name " + quoteName(l.Name)
		}
		if l.Name == "__name__" {
			if !validMetricName(l.Value) {
				return dst[:orig], reasonInvalidName, "invalid metric name " + quoteName(l.Value)
			}
			hasName = true
		}
		dst = head.AppendLabel(dst, l.Name, l.Value)
	}
	if !hasName {
		return dst[:orig], reasonMissingName, "no metric name"
	}
	// Names are ASCII (checked above), so a packed set that is all ASCII
	// has valid UTF-8 values: one pass over contiguous bytes instead of a
	// call per value. Lengths over 127 and other bytes take the slow path.
	if !isASCII(dst[orig:]) {
		for _, l := range ls {
			if !utf8.ValidString(l.Value) {
				return dst[:orig], reasonInvalidUTF8, "label " + l.Name + " has a value that is not valid UTF-8" // l.Name is valid here
			}
		}
	}
	return dst, "", ""
}

// isASCII reports whether b has no byte above 0x7f, eight bytes at a time.
func isASCII(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// Character classes of label and metric names, by byte.
const (
	nameFirst   = 1 << iota // may start a label name: [a-zA-Z_]
	nameRest                // may follow in a label name: [a-zA-Z0-9_]
	metricFirst             // may start a metric name: [a-zA-Z_:]
	metricRest              // may follow in a metric name: [a-zA-Z0-9_:]
)

var nameClass = func() (t [256]uint8) {
	for c := range 256 {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
		digit := c >= '0' && c <= '9'
		if alpha {
			t[c] |= nameFirst | nameRest | metricFirst | metricRest
		}
		if digit {
			t[c] |= nameRest | metricRest
		}
		if c == ':' {
			t[c] |= metricFirst | metricRest
		}
	}
	return t
}()

// validLabelName reports whether s matches [a-zA-Z_][a-zA-Z0-9_]*.
func validLabelName(s string) bool { return validName(s, nameFirst, nameRest) }

// validMetricName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validMetricName(s string) bool { return validName(s, metricFirst, metricRest) }

func validName(s string, first, rest uint8) bool {
	if s == "" || nameClass[s[0]]&first == 0 {
		return false
	}
	for i := 1; i < len(s); i++ {
		if nameClass[s[i]]&rest == 0 {
			return false
		}
	}
	return true
}

// Bounds on what an error message quotes of the client's data.
const (
	maxQuoted      = 64  // bytes of one name or value
	maxDescription = 256 // bytes of a whole label set
)

// quoteName quotes a name or value for a one-line message, cut at maxQuoted
// bytes.
func quoteName(s string) string {
	return string(appendQuoted(nil, s))
}

func appendQuoted(b []byte, s string) []byte {
	if len(s) > maxQuoted {
		return append(strconv.AppendQuoteToASCII(b, s[:maxQuoted]), "..."...)
	}
	return strconv.AppendQuoteToASCII(b, s)
}

// describeSeries renders a client's label set for an error message: one
// line, names and values quoted and cut short, the whole bounded.
func describeSeries(ls []remotewrite.Label) string {
	b := make([]byte, 0, 128)
	b = append(b, '{')
	for i, l := range ls {
		if len(b) > maxDescription {
			b = append(b, ", ..."...)
			break
		}
		if i > 0 {
			b = append(b, ", "...)
		}
		if validLabelName(l.Name) {
			b = append(b, l.Name...)
		} else {
			b = appendQuoted(b, l.Name)
		}
		b = append(b, '=')
		b = appendQuoted(b, l.Value)
	}
	return string(append(b, '}'))
}
