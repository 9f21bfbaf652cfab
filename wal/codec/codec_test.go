package codec

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestReader(t *testing.T) {
	b := binary.AppendUvarint(nil, 300)
	b = binary.AppendVarint(b, -7)
	b = binary.LittleEndian.AppendUint64(b, 42)
	b = append(b, "abc"...)
	r := Reader{B: b}
	if u, v, x, s := r.Uvarint(), r.Varint(), r.Uint64(), string(r.Bytes(3)); u != 300 || v != -7 || x != 42 || s != "abc" || r.Err != nil || len(r.B) != 0 {
		t.Fatalf("got %d %d %d %q %v", u, v, x, s, r.Err)
	}
	for n := range len(b) {
		r := Reader{B: b[:n]}
		r.Uvarint()
		r.Varint()
		r.Uint64()
		r.Bytes(3)
		if !errors.Is(r.Err, ErrShort) {
			t.Fatalf("input cut at %d: err %v", n, r.Err)
		}
	}
}
