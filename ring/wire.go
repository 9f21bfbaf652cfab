package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/fedgate/fedgate/wal/codec"
	"github.com/fedgate/fedgate/wal/head"
)

// A forwarded batch travels between gateway instances snappy-compressed in
// this form (uvarint and varint are Go's encoding/binary forms):
//
//	"FGB1"
//	uvarint len, tenant
//	uvarint max series (the tenant's limit, enforced by the owner)
//	uvarint n series, then n × {
//	    uvarint len, packed labels (head.Labels form, final: stamped,
//	                                relabeled, validated by the sender)
//	    uvarint m samples, then m × { varint t, uint64 LE value bits }
//	}
const batchMagic = "FGB1"

// BatchContentType is the Content-Type of a forwarded batch.
const BatchContentType = "application/x-fedgate-batch"

// AppendBatch encodes b onto dst.
func AppendBatch(dst []byte, b *head.Batch) []byte {
	dst = append(dst, batchMagic...)
	dst = binary.AppendUvarint(dst, uint64(len(b.Tenant)))
	dst = append(dst, b.Tenant...)
	dst = binary.AppendUvarint(dst, uint64(max(b.MaxSeries, 0)))
	dst = binary.AppendUvarint(dst, uint64(len(b.Series)))
	for _, s := range b.Series {
		lbls := s.PackedLabels()
		dst = binary.AppendUvarint(dst, uint64(len(lbls)))
		dst = append(dst, lbls...)
		dst = binary.AppendUvarint(dst, uint64(len(s.Samples)))
		for _, smp := range s.Samples {
			dst = binary.AppendVarint(dst, smp.T)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(smp.V))
		}
	}
	return dst
}

// ErrBadBatch is matched by every error DecodeBatch returns.
var ErrBadBatch = errors.New("malformed forwarded batch")

// BatchDecoder decodes forwarded batches into reused memory. The labels and
// tenant of a decoded batch alias the input; both are valid until the next
// Decode.
type BatchDecoder struct {
	batch   head.Batch
	samples []head.Sample
	ends    []int
}

// footprint returns the bytes the decoder's buffers hold.
func (d *BatchDecoder) footprint() int {
	return cap(d.samples)*int(unsafe.Sizeof(head.Sample{})) +
		cap(d.batch.Series)*int(unsafe.Sizeof(head.BatchSeries{})) +
		cap(d.ends)*int(unsafe.Sizeof(0))
}

// Decode decodes b. Packed labels are checked for form (so that the head
// can walk them), not revalidated: the sender validated them and is a
// trusted peer.
func (d *BatchDecoder) Decode(b []byte) (*head.Batch, error) {
	if len(b) < len(batchMagic) || string(b[:len(batchMagic)]) != batchMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrBadBatch)
	}
	r := codec.Reader{B: b[len(batchMagic):]}
	tenant := r.Bytes(r.Uvarint())
	maxSeries := r.Uvarint()
	n := r.Uvarint()
	if r.Err == nil && n > uint64(len(r.B)) { // every series takes at least two bytes
		r.Err = codec.ErrShort
	}
	d.batch.Series = d.batch.Series[:0]
	d.samples = d.samples[:0]
	d.ends = d.ends[:0]
	for i := uint64(0); i < n && r.Err == nil; i++ {
		lbls := r.Bytes(r.Uvarint())
		if r.Err == nil && !validPacked(lbls) {
			return nil, fmt.Errorf("%w: series %d: labels are not packed label pairs", ErrBadBatch, i)
		}
		m := r.Uvarint()
		if r.Err == nil && m > uint64(len(r.B))/9 {
			r.Err = codec.ErrShort
		}
		for j := uint64(0); j < m && r.Err == nil; j++ {
			t := r.Varint()
			v := math.Float64frombits(r.Uint64())
			d.samples = append(d.samples, head.Sample{T: t, V: v})
		}
		d.batch.Series = append(d.batch.Series, head.BatchSeries{Labels: lbls})
		d.ends = append(d.ends, len(d.samples))
	}
	if r.Err == nil && len(r.B) != 0 {
		r.Err = fmt.Errorf("%d bytes after the last series", len(r.B))
	}
	if r.Err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBatch, r.Err)
	}
	prev := 0
	for i, end := range d.ends {
		d.batch.Series[i].Samples = d.samples[prev:end:end]
		prev = end
	}
	d.batch.Tenant = unsafe.String(unsafe.SliceData(tenant), len(tenant))
	d.batch.MaxSeries = int(min(maxSeries, math.MaxInt32))
	return &d.batch, nil
}

// validPacked reports whether b is a sequence of complete name/value pairs
// in head.Labels form.
func validPacked(b []byte) bool {
	for pairs := 0; len(b) > 0; pairs++ {
		for range 2 {
			n, w := binary.Uvarint(b)
			if w <= 0 || w > 1 && b[w-1] == 0 || n > uint64(len(b)-w) { // the shortest form only
				return false
			}
			b = b[w+int(n):]
		}
	}
	return true
}
