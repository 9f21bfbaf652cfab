package federate

import (
	"bytes"
	"math"
	"strconv"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/fedgate/fedgate/wal/head"
)

// appendSample appends one exposition line:
//
//	name{a="1",instance="",z="2"} value timestamp\n
//
// with labels in sorted order, __name__ left out and instance="" added where
// the series has no instance label.
func appendSample(b []byte, name string, ls head.LabelIter, t int64, v float64) []byte {
	b = append(b, name...)
	// Label values almost never hold a byte to escape, so they are copied
	// as they are and the set is checked as a whole, with the vector code of
	// package bytes: it is right if it holds no backslash, no line feed and
	// only the two quotes around each value. Else it is written again,
	// escaped.
	start := len(b)
	b, n := appendLabels(b, ls, false)
	if set := b[start:]; bytes.IndexByte(set, '\\') >= 0 || bytes.IndexByte(set, '\n') >= 0 ||
		bytes.Count(set, []byte(`"`)) != 2*n {
		b, _ = appendLabels(b[:start], ls, true)
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	b = append(b, ' ')
	b = strconv.AppendInt(b, t, 10)
	return append(b, '\n')
}

// appendLabels appends {a="1",instance="",z="2"}, the values escaped or as
// they are, and returns how many labels it wrote. ls is positioned before
// its first label (a copy: the caller's is not moved).
func appendLabels(b []byte, ls head.LabelIter, escape bool) ([]byte, int) {
	const emptyInstance = instanceLabel + `="",`
	b = append(b, '{')
	n, instance := 0, false
	// Not "for it := ls; it.Next();": a loop variable whose address is
	// taken (by Next) is copied for every iteration.
	it := ls
	for it.Next() {
		if it.Name == labels.MetricName {
			continue
		}
		if !instance && it.Name >= instanceLabel {
			instance = true
			if it.Name != instanceLabel {
				b = append(b, emptyInstance...)
				n++
			}
		}
		b = append(b, it.Name...)
		b = append(b, '=', '"')
		if escape {
			b = appendEscaped(b, it.Value)
		} else {
			b = append(b, it.Value...)
		}
		b = append(b, '"', ',')
		n++
	}
	if !instance {
		b = append(b, emptyInstance...)
		n++
	}
	// There is at least one label, instance: its comma closes the set.
	b[len(b)-1] = '}'
	return b, n
}

// appendEscaped escapes a label value as the text format requires:
// backslash, double quote and line feed.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '\\':
			esc = `\\`
		case '"':
			esc = `\"`
		case '\n':
			esc = `\n`
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		start = i + 1
	}
	return append(b, s[start:]...)
}

// appendFloat formats v as the text format and Prometheus do: Go's shortest
// 'g' form, with +Inf, -Inf and NaN spelled out.
func appendFloat(b []byte, v float64) []byte {
	// Most values are whole or have a few decimals (k/8, milliseconds as
	// seconds): print those as integers, sparing the general algorithm.
	// That m/1000 rounds to v makes m/1000 a decimal of at most 9 digits
	// that reads back as v, and a float64 tells such decimals apart (up to
	// 15 digits), so it is the shortest; below 1e6 (and from 1e-3 up) 'g'
	// writes it without an exponent. -0 must stay "-0".
	if m := math.Round(v * 1000); math.Abs(v) < 1e6 && m/1000 == v && math.Float64bits(v) != negativeZero {
		return appendMillis(b, int64(m))
	}
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

const negativeZero = 1 << 63 // the bits of -0

// appendMillis appends m/1000 in decimal, without trailing zeros.
func appendMillis(b []byte, m int64) []byte {
	if m < 0 {
		b = append(b, '-')
		m = -m
	}
	b = strconv.AppendInt(b, m/1000, 10)
	frac := m % 1000
	if frac == 0 {
		return b
	}
	digits := [4]byte{'.', byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
	n := len(digits)
	for digits[n-1] == '0' {
		n--
	}
	return append(b, digits[:n]...)
}
