// Package codec reads the little binary formats fedgate writes (WAL record
// payloads, batches forwarded between instances) and request bodies that
// carry them. It owns reading primitives only, never a format.
package codec

import (
	"encoding/binary"
	"errors"
	"io"
	"slices"
)

// ErrShort is the error of a Reader that ran past its input.
var ErrShort = errors.New("input ends early")

// Reader decodes fields from B in order. The first field that does not fit
// sets Err, after which every call returns zero values; check Err once at
// the end.
type Reader struct {
	B   []byte
	Err error
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.B)
	if n <= 0 {
		r.Err = ErrShort
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Varint reads a signed varint.
func (r *Reader) Varint() int64 {
	if r.Err != nil {
		return 0
	}
	v, n := binary.Varint(r.B)
	if n <= 0 {
		r.Err = ErrShort
		return 0
	}
	r.B = r.B[n:]
	return v
}

// Uint64 reads eight little-endian bytes.
func (r *Reader) Uint64() uint64 {
	if r.Err != nil || len(r.B) < 8 {
		r.Err = ErrShort
		return 0
	}
	v := binary.LittleEndian.Uint64(r.B)
	r.B = r.B[8:]
	return v
}

// Bytes reads n bytes, aliasing the input.
func (r *Reader) Bytes(n uint64) []byte {
	if r.Err != nil || n > uint64(len(r.B)) {
		r.Err = ErrShort
		return nil
	}
	out := r.B[:n]
	r.B = r.B[n:]
	return out
}

// ReadLimited reads r into dst, growing it by doubling but never past
// limit+1 bytes, and trusting Content-Length only up to 1 MiB: a slow,
// lying or oversized client costs at most about twice the limit.
func ReadLimited(dst []byte, r io.Reader, contentLength int64, limit int) ([]byte, error) {
	if contentLength > 0 && cap(dst) < int(contentLength) {
		dst = slices.Grow(dst, min(int(contentLength)+1, 1<<20))
	}
	for {
		if len(dst) == cap(dst) {
			dst = slices.Grow(dst, max(1, min(max(len(dst), 64<<10), limit+1-len(dst))))
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}
