package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// CorruptionError reports a record that cannot be read: where it starts and
// why. Replay goes on with the next file.
type CorruptionError struct {
	File   string // segment or checkpoint file name
	Offset int64  // where the bad record starts
	Err    error
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("corrupt record in %s at offset %d: %v", e.File, e.Offset, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

var (
	errTorn   = errors.New("record cut short (torn write)")
	errZero   = errors.New("zeroed region")
	errLength = errors.New("record length out of range")
	errCRC    = errors.New("checksum mismatch")
	errType   = errors.New("unknown record type")
)

// reader reads the records of one file in order.
type reader struct {
	max    int // the largest record length taken, maxRecord but in tests
	name   string
	r      *bufio.Reader
	offset int64 // where the next record starts
	buf    []byte
	hdr    [headerSize]byte
}

func newReader(name string, r io.Reader, buf []byte) *reader {
	return &reader{max: maxRecord, name: name, r: bufio.NewReaderSize(r, 1<<20), buf: buf}
}

// next returns the next record's type and payload, valid until the next
// call; io.EOF at a clean end; a *CorruptionError for damaged records; or
// another error when reading failed (the file may be fine).
func (r *reader) next() (byte, []byte, error) {
	_, err := io.ReadFull(r.r, r.hdr[:])
	switch {
	case err == io.EOF:
		return 0, nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		return 0, nil, r.corrupt(errTorn)
	case err != nil:
		return 0, nil, fmt.Errorf("read %s at offset %d: %w", r.name, r.offset, err) // I/O, not damage
	}
	length := binary.LittleEndian.Uint32(r.hdr[0:])
	sum := binary.LittleEndian.Uint32(r.hdr[4:])
	if length == 0 {
		return 0, nil, r.corrupt(errZero)
	}
	if int64(length) > int64(r.max) {
		return 0, nil, r.corrupt(errLength)
	}
	body, err := r.readBody(int(length))
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return 0, nil, r.corrupt(errTorn)
	case err != nil:
		return 0, nil, fmt.Errorf("read %s at offset %d: %w", r.name, r.offset, err)
	}
	if crc32.Checksum(body, castagnoli) != sum {
		return 0, nil, r.corrupt(errCRC)
	}
	if body[0] < recSeries || body[0] > recBase {
		return 0, nil, r.corrupt(errType)
	}
	r.offset += headerSize + int64(length)
	return body[0], body[1:], nil
}

// readBody reads the n bytes of a record into r.buf. Past the buffer's
// capacity it grows with the bytes that actually arrive: a length that
// corruption made huge must not allocate up to maxRecord.
func (r *reader) readBody(n int) ([]byte, error) {
	if n <= cap(r.buf) {
		r.buf = r.buf[:n]
		_, err := io.ReadFull(r.r, r.buf)
		return r.buf, err
	}
	b := r.buf[:0]
	for len(b) < n {
		b = slices.Grow(b, min(n-len(b), max(len(b), 64<<10)))
		m, err := io.ReadFull(r.r, b[len(b):min(n, cap(b))])
		b = b[:len(b)+m]
		if err != nil {
			r.buf = b[:0]
			return nil, err
		}
	}
	r.buf = b
	return b, nil
}

func (r *reader) corrupt(err error) error {
	return &CorruptionError{File: r.name, Offset: r.offset, Err: err}
}
