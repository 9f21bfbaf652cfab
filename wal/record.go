package wal

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/fedgate/fedgate/wal/codec"
	"github.com/fedgate/fedgate/wal/head"
)

// Record types. See the package documentation for their payloads.
const (
	recSeries     byte = 1
	recSamples    byte = 2
	recTombstones byte = 3
	recBase       byte = 4
)

const headerSize = 8 // length uint32, crc uint32; the type byte is counted in length

// maxRecord bounds one record; a larger length is corruption. Writers
// start a new series or samples record once one holds recordSplit bytes,
// and an entry is far smaller than the difference, however large the
// request (a record's entries can take more bytes than the request held
// them in: a tenant per series, wider samples). Options carries both, for
// tests to lower.
const (
	maxRecord   = 256 << 20
	recordSplit = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frame reserves a record header at the end of b; the caller appends the
// type byte and payload, then finish fills the header in.
func frame(b []byte) (out []byte, start int) {
	start = len(b)
	return append(b, make([]byte, headerSize)...), start
}

func finish(b []byte, start int) []byte {
	body := b[start+headerSize:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(body, castagnoli))
	return b
}

// appendSeriesRecord appends series records for ss, a new one each time
// one holds split bytes, and returns how many.
func appendSeriesRecord(b []byte, ss []*head.Series, split int) ([]byte, int) {
	records := 0
	for len(ss) > 0 {
		var start int
		b, start = frame(b)
		b = append(b, recSeries)
		countAt := len(b)
		b = append(b, make([]byte, countWidth)...)
		n := 0
		for n < len(ss) && len(b)-start < split {
			s := ss[n]
			b = binary.AppendUvarint(b, s.Ref())
			t := s.Tenant()
			b = binary.AppendUvarint(b, uint64(len(t)))
			b = append(b, t...)
			b = appendSeriesLabels(b, s)
			n++
		}
		putPaddedUvarint(b[countAt:countAt+countWidth], uint64(n))
		b = finish(b, start)
		ss = ss[n:]
		records++
	}
	return b, records
}

// appendSeriesLabels appends s's labels in packed form with their length
// before them.
func appendSeriesLabels(b []byte, s *head.Series) []byte {
	at := len(b)
	b = s.AppendLabels(b)
	n := len(b) - at
	var pre [binary.MaxVarintLen64]byte
	w := binary.PutUvarint(pre[:], uint64(n))
	b = append(b, pre[:w]...) // room for the prefix
	copy(b[at+w:], b[at:at+n])
	copy(b[at:], pre[:w])
	return b
}

// appendTombstones appends a record of series removed from the head (their
// tenant moved away): replay removes them again.
func appendTombstones(b []byte, ss []*head.Series) []byte {
	b, start := frame(b)
	b = append(b, recTombstones)
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = binary.AppendUvarint(b, s.Ref())
	}
	return finish(b, start)
}

// decodeTombstones calls fn for each ref of a tombstones record payload,
// once the whole payload has decoded.
func decodeTombstones(payload []byte, fn func(ref uint64)) error {
	for pass := range 2 {
		r := codec.Reader{B: payload}
		n := r.Uvarint()
		for i := uint64(0); i < n && r.Err == nil; i++ {
			ref := r.Uvarint()
			if pass == 1 && r.Err == nil {
				fn(ref)
			}
		}
		if r.Err == nil && len(r.B) != 0 {
			r.Err = fmt.Errorf("%d bytes after the last entry", len(r.B))
		}
		if r.Err != nil {
			return fmt.Errorf("tombstones record: %w", r.Err)
		}
	}
	return nil
}

// appendBase appends the base record of a delta checkpoint building on
// checkpoint.n, whose earlier deltas have carried carried series records.
func appendBase(b []byte, n, carried int) []byte {
	b, start := frame(b)
	b = append(b, recBase)
	b = binary.AppendUvarint(b, uint64(n))
	b = binary.AppendUvarint(b, uint64(carried))
	return finish(b, start)
}

// decodeBase returns the checkpoint number and the carried count of a base
// record payload.
func decodeBase(payload []byte) (n, carried int, err error) {
	r := codec.Reader{B: payload}
	b, c := r.Uvarint(), r.Uvarint()
	switch {
	case r.Err != nil:
	case len(r.B) != 0:
		r.Err = fmt.Errorf("%d bytes after the checkpoint number", len(r.B))
	case b == 0 || b > maxSegment:
		r.Err = fmt.Errorf("checkpoint number %d out of range", b)
	case c > math.MaxInt32:
		r.Err = fmt.Errorf("carried count %d out of range", c)
	}
	if r.Err != nil {
		return 0, 0, fmt.Errorf("base record: %w", r.Err)
	}
	return int(b), int(c), nil
}

// sampleRef is one sample with the ref of its series.
type sampleRef struct {
	ref uint64
	t   int64
	v   float64
}

// samplesWriter builds one samples record incrementally.
type samplesWriter struct {
	b     []byte
	start int
	count int
	base  int64
	// countAt is where the count placeholder sits; the count is written as
	// a fixed-width uvarint (padded) once known.
	countAt int
	// split is the size at which add ends a record and starts another
	// (0: recordSplit); splits counts those it ended since its user last
	// zeroed it.
	split, splits int
}

const countWidth = 5 // a padded uvarint of up to 2^35-1 samples

func (w *samplesWriter) begin(b []byte, base int64) {
	w.b, w.start = frame(b)
	w.b = append(w.b, recSamples)
	w.countAt = len(w.b)
	w.b = append(w.b, make([]byte, countWidth)...)
	w.b = binary.AppendVarint(w.b, base)
	w.base, w.count = base, 0
}

func (w *samplesWriter) add(ref uint64, t int64, v float64) {
	if w.count > 0 && len(w.b)-w.start >= cmp.Or(w.split, recordSplit) {
		w.begin(w.end(), w.base)
		w.splits++
	}
	w.b = binary.AppendUvarint(w.b, ref)
	w.b = binary.AppendVarint(w.b, t-w.base)
	w.b = binary.LittleEndian.AppendUint64(w.b, math.Float64bits(v))
	w.count++
}

func (w *samplesWriter) end() []byte {
	putPaddedUvarint(w.b[w.countAt:w.countAt+countWidth], uint64(w.count))
	return finish(w.b, w.start)
}

// putPaddedUvarint writes v as a uvarint of exactly len(dst) bytes, using
// continuation bits on zero groups; binary.Uvarint reads it back.
func putPaddedUvarint(dst []byte, v uint64) {
	for i := range dst {
		c := byte(v & 0x7f)
		v >>= 7
		if i < len(dst)-1 {
			c |= 0x80
		}
		dst[i] = c
	}
}

// decodeSeries calls fn for each entry of a series record payload, once
// the whole payload has decoded: a record that does not decode applies
// nothing (replay may truncate it away, and what it applied would then not
// be on disk). The slices passed to fn alias payload.
func decodeSeries(payload []byte, fn func(ref uint64, tenant, labels []byte)) error {
	if err := walkSeries(payload, nil); err != nil {
		return fmt.Errorf("series record: %w", err)
	}
	return walkSeries(payload, fn)
}

func walkSeries(payload []byte, fn func(ref uint64, tenant, labels []byte)) error {
	r := codec.Reader{B: payload}
	n := r.Uvarint()
	for i := uint64(0); i < n && r.Err == nil; i++ {
		ref := r.Uvarint()
		tenant := r.Bytes(r.Uvarint())
		labels := r.Bytes(r.Uvarint())
		if r.Err == nil && !validLabels(labels) {
			r.Err = errLabels
		}
		if r.Err == nil && fn != nil {
			fn(ref, tenant, labels)
		}
	}
	if r.Err == nil && len(r.B) != 0 {
		r.Err = fmt.Errorf("%d bytes after the last entry", len(r.B))
	}
	return r.Err
}

var errLabels = errors.New("labels are not a packed label set")

// validLabels reports whether b is a label set as head.AppendLabel packs
// it: name, value pairs, each length a uvarint in its shortest form. The
// head trusts the labels it is given (it panics on malformed ones) and
// tells series apart by their bytes.
func validLabels(b []byte) bool {
	for len(b) > 0 {
		_, rest, ok := cutPacked(b)
		if !ok {
			return false
		}
		if _, b, ok = cutPacked(rest); !ok {
			return false
		}
	}
	return true
}

// cutPacked splits a uvarint-length-prefixed string off b.
func cutPacked(b []byte) (s, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	// A uvarint of several bytes that ends in a zero byte is not in its
	// shortest form.
	if w <= 0 || w > 1 && b[w-1] == 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
}

// decodeSamples calls fn for each entry of a samples record payload, once
// the whole payload has decoded (see decodeSeries).
func decodeSamples(payload []byte, fn func(ref uint64, t int64, v float64)) error {
	if err := walkSamples(payload, nil); err != nil {
		return fmt.Errorf("samples record: %w", err)
	}
	return walkSamples(payload, fn)
}

func walkSamples(payload []byte, fn func(ref uint64, t int64, v float64)) error {
	r := codec.Reader{B: payload}
	n := r.Uvarint()
	base := r.Varint()
	for i := uint64(0); i < n && r.Err == nil; i++ {
		ref := r.Uvarint()
		t := base + r.Varint()
		v := math.Float64frombits(r.Uint64())
		if r.Err == nil && fn != nil {
			fn(ref, t, v)
		}
	}
	if r.Err == nil && len(r.B) != 0 {
		r.Err = fmt.Errorf("%d bytes after the last entry", len(r.B))
	}
	return r.Err
}
