package remotewrite

import (
	"errors"
	"fmt"
)

// ErrMalformed is matched (errors.Is) by every error Unmarshal returns: the
// body is not a valid prometheus.WriteRequest. The gateway answers it with
// 400; the error text is a one-line reason such as
// "decode timeseries 12: label 3: unexpected EOF".
var ErrMalformed = errors.New("malformed remote-write request")

// malformed is the innermost error of every decode failure: what is wrong on
// the wire, without context. Context is added by wrapping with %w.
type malformed string

func (e malformed) Error() string { return string(e) }

// Is makes every decode error match ErrMalformed.
func (e malformed) Is(target error) bool { return target == ErrMalformed }

// ErrTooDense is returned (and matches ErrMalformed) when a request decodes
// to more series, labels and samples than its size can honestly hold: more
// than DensityFactor times its bytes plus DensitySlack, in memory. Real
// requests stay near 2×; degenerate ones (millions of empty series or
// labels) would otherwise turn a 32 MiB body into gigabytes.
var ErrTooDense error = errTooDense

// The density budget; see ErrTooDense.
const (
	DensityFactor = 8
	DensitySlack  = 1 << 20
)

const (
	errTooDense  malformed = "request decodes to more series, labels and samples than its size allows"
	errTruncated malformed = "unexpected EOF"
	errOverflow  malformed = "varint overflows 64 bits"
	errLength    malformed = "negative length"
	errEndGroup  malformed = "unexpected end group"
)

func errTag(tag uint64) error {
	return malformed(fmt.Sprintf("illegal tag %d (field %d, wire type %d)", tag, int32(tag>>3), tag&7))
}

func errWireType(field string, got uint64) error {
	return malformed(fmt.Sprintf("wrong wire type %d for %s", got, field))
}

func errIllegalWireType(wt uint64) error {
	return malformed(fmt.Sprintf("illegal wire type %d", wt))
}
