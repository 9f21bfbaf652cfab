package remotewrite_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
)

// Hand-made protobuf, so cases can break the rules on purpose.

func vint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func tg(field uint64, wt uint64) []byte { return vint(field<<3 | wt) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// ld is a length-delimited field.
func ld(field uint64, payload ...[]byte) []byte {
	p := cat(payload...)
	return cat(tg(field, 2), vint(uint64(len(p))), p)
}

func f64(field uint64, v float64) []byte {
	return binary.LittleEndian.AppendUint64(tg(field, 1), math.Float64bits(v))
}

func vf(field uint64, v uint64) []byte { return cat(tg(field, 0), vint(v)) }

func label(name, value string) []byte {
	return ld(1, ld(1, []byte(name)), ld(2, []byte(value)))
}

func sample(v float64, ts int64) []byte { return ld(2, f64(1, v), vf(2, uint64(ts))) }

// upSeries is a valid TimeSeries field: up{job="a"} 1 @1000.
func upSeries() []byte { return ld(1, label("__name__", "up"), label("job", "a"), sample(1, 1000)) }

// TestMalformedCases runs hand-made payloads, each breaking (or bending) one
// wire-format rule, and checks that remotewrite and prompb agree with each
// other and with the expected outcome.
func TestMalformedCases(t *testing.T) {
	pad := func(n int) []byte { return make([]byte, n) }
	cases := map[string]struct {
		payload []byte
		wantErr bool
	}{
		"empty body":                         {nil, false},
		"empty series":                       {ld(1), false},
		"timeseries as varint":               {vf(1, 5), true},
		"timeseries as fixed32":              {cat(tg(1, 5), pad(4)), true},
		"timeseries as start group":          {cat(tg(1, 3), tg(1, 4)), true},
		"metadata as fixed64":                {cat(tg(3, 1), pad(8)), true},
		"metadata help as varint":            {ld(3, vf(4, 1)), true},
		"metadata type as bytes":             {ld(3, ld(1, []byte("x"))), true},
		"metadata unknown field 3 skipped":   {ld(3, ld(3, []byte("x")), vf(1, 2)), false},
		"label as varint":                    {ld(1, vf(1, 7)), true},
		"label name as fixed64":              {ld(1, ld(1, f64(1, 1))), true},
		"label value past label end":         {ld(1, ld(1, tg(2, 2), vint(5), []byte("ab"))), true},
		"label length past series end":       {ld(1, tg(1, 2), vint(50), label("a", "b")), true},
		"sample value as varint":             {ld(1, ld(2, vf(1, 1))), true},
		"sample timestamp as fixed64":        {ld(1, ld(2, f64(2, 1))), true},
		"sample value truncated":             {ld(1, ld(2, tg(1, 1), pad(4))), true},
		"sample timestamp of 11 bytes":       {ld(1, ld(2, tg(2, 0), bytes.Repeat([]byte{0xff}, 10), []byte{0})), true},
		"sample timestamp of 10 bytes":       {ld(1, ld(2, vf(2, uint64(math.MaxUint64)))), false},
		"exemplar label as varint":           {ld(1, ld(3, vf(1, 1))), true},
		"exemplar label name as varint":      {ld(1, ld(3, ld(1, vf(1, 1)))), true},
		"exemplar value as varint":           {ld(1, ld(3, vf(2, 1))), true},
		"exemplar as varint":                 {ld(1, vf(3, 1)), true},
		"histogram as fixed64":               {ld(1, cat(tg(4, 1), pad(8))), true},
		"histogram count_float as varint":    {ld(1, ld(4, vf(2, 1))), true},
		"histogram schema as bytes":          {ld(1, ld(4, ld(4, pad(1)))), true},
		"histogram span as varint":           {ld(1, ld(4, vf(8, 1))), true},
		"histogram span offset as bytes":     {ld(1, ld(4, ld(11, ld(1, pad(1))))), true},
		"histogram deltas unpacked":          {ld(1, ld(4, vf(9, 3), vf(9, 4), vf(12, 1))), false},
		"histogram counts unpacked":          {ld(1, ld(4, f64(10, 1), f64(13, 2), f64(16, 3))), false},
		"histogram deltas as fixed64":        {ld(1, ld(4, f64(9, 1))), true},
		"histogram counts as varint":         {ld(1, ld(4, vf(13, 1))), true},
		"histogram packed varint overruns":   {ld(1, ld(4, tg(9, 2), vint(1), []byte{0x80, 0x01})), false},
		"histogram packed varint truncated":  {ld(1, ld(4, tg(9, 2), vint(1), []byte{0x80})), true},
		"histogram packed double overruns":   {ld(1, ld(4, tg(13, 2), vint(4), pad(8))), false},
		"histogram packed double truncated":  {ld(1, ld(4, tg(13, 2), vint(4), pad(4))), true},
		"histogram packed length past end":   {ld(1, ld(4, tg(16, 2), vint(9), pad(8))), true},
		"tag of 11 bytes":                    {cat([]byte{0x8a}, bytes.Repeat([]byte{0x80}, 9), []byte{0}, vint(0)), true},
		"tag of 10 bytes, high bits dropped": {cat([]byte{0x8a}, bytes.Repeat([]byte{0x80}, 8), []byte{0x7e}, vint(0)), false},
		"tag with field number past int32":   {cat(tg(1+1<<32, 2), vint(0)), false},
		"tag with field number negative":     {cat(tg(1<<31, 2), vint(0)), true},
		"tag with field number zero":         {cat(tg(0, 2), vint(0)), true},
		"non-minimal length":                 {cat(tg(1, 2), []byte{0x80, 0x80, 0x00}), false},
		"end group at top level":             {cat(tg(5, 4), upSeries()), true},
		"end group in series":                {ld(1, tg(5, 4)), true},
		"unknown group skipped":              {cat(tg(7, 3), vf(1, 9), ld(2, pad(3)), tg(7, 4), upSeries()), false},
		"unknown nested groups":              {cat(tg(7, 3), tg(0, 3), f64(1, 1), tg(0, 4), tg(7, 4), upSeries()), false},
		"group closed by another field":      {cat(tg(7, 3), tg(9, 4), upSeries()), false},
		"unterminated group":                 {cat(upSeries(), tg(7, 3), vf(1, 1)), true},
		"unknown wire type 6":                {cat(upSeries(), tg(7, 6)), true},
		"unknown wire type 7":                {cat(tg(7, 7), upSeries()), true},
		"unknown fixed32 truncated":          {cat(upSeries(), tg(7, 5), pad(3)), true},
		"unknown fixed64 truncated":          {cat(upSeries(), tg(7, 1), pad(7)), true},
		"unknown varint of 11 bytes":         {cat(upSeries(), tg(7, 0), bytes.Repeat([]byte{0x80}, 10), []byte{0}), true},
		"unknown bytes past end":             {cat(upSeries(), tg(7, 2), vint(10), pad(3)), true},
		"unknown negative length":            {cat(upSeries(), tg(7, 2), vint(1<<63)), true},
		"unknown fields everywhere":          {cat(vf(9, 1), ld(1, f64(8, 1), ld(1, vf(3, 1), ld(1, []byte("a"))), ld(2, vf(9, 9), f64(1, 2))), cat(tg(2, 5), pad(4))), false},
		"reserved field 2 skipped":           {cat(ld(2, []byte("cortex")), upSeries()), false},
		"length past end":                    {cat(tg(1, 2), vint(100), pad(5)), true},
		"negative length":                    {cat(tg(1, 2), vint(1<<63)), true},
		"length of max int":                  {cat(tg(1, 2), vint(math.MaxInt64)), true},
		"negative label length":              {ld(1, tg(1, 2), vint(math.MaxUint64)), true},
		"label fields reversed and repeated": {ld(1, ld(1, ld(2, []byte("v1")), ld(1, []byte("n")), ld(2, []byte("v2")))), false},
		"series fields interleaved":          {ld(1, sample(1, 1), label("a", "b"), ld(3), sample(2, 2), ld(4), label("c", "d")), false},
	}
	var r remotewrite.Request
	for name, c := range cases {
		if err := remotewritetest.Diff(&r, c.payload); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		err := r.Unmarshal(c.payload)
		if (err != nil) != c.wantErr {
			t.Errorf("%s: got error %v, want error: %v", name, err, c.wantErr)
		}
	}
}

// TestLastScalarWins pins the proto3 rule that gogo follows: of a scalar
// field sent twice, the last one counts.
func TestLastScalarWins(t *testing.T) {
	b := ld(1,
		ld(1, ld(2, []byte("v1")), ld(1, []byte("m")), ld(1, []byte("n")), ld(2, []byte("v2"))),
		ld(2, vf(2, 5), f64(1, 1), f64(1, 2), vf(2, 7)),
	)
	var r remotewrite.Request
	if err := r.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	s := r.Series[0]
	if s.Labels[0] != (remotewrite.Label{Name: "n", Value: "v2"}) || s.Samples[0] != (remotewrite.Sample{Value: 2, Timestamp: 7}) {
		t.Fatalf("got %+v", s)
	}
}

// damagePayloads are valid payloads of a few KB that the tests below cut
// and damage; each test decodes them thousands of times.
func damagePayloads(t *testing.T) map[string][]byte {
	rng := rand.New(rand.NewPCG(5, 6))
	p := map[string][]byte{
		"kubernetes": remotewritetest.KubernetesBytes(4, 2),
		"random-a":   remotewritetest.Random(rng, 8),
		"random-b":   remotewritetest.Random(rng, 8),
		"random-c":   remotewritetest.Random(rng, 8),
	}
	for name, b := range captured(t) {
		p[name] = b
	}
	for name, b := range p {
		if p[name] = remotewritetest.Head(b, 2000); p[name] == nil {
			t.Fatalf("%s: no valid prefix of at most 2000 bytes", name)
		}
	}
	return p
}

// TestTruncatedAtEveryOffset cuts valid payloads at every byte offset.
// Cutting between two top-level fields leaves a valid, shorter request;
// cutting anywhere else must fail. Either way the decoders must agree.
func TestTruncatedAtEveryOffset(t *testing.T) {
	var r remotewrite.Request
	for name, b := range damagePayloads(t) {
		rejected := 0
		for n := range len(b) {
			if err := remotewritetest.Diff(&r, b[:n]); err != nil {
				t.Fatalf("%s cut at %d of %d: %v", name, n, len(b), err)
			}
			if r.Unmarshal(b[:n]) != nil {
				rejected++
			}
		}
		if len(b) > 0 && rejected == 0 {
			t.Errorf("%s: no truncation was rejected", name)
		}
	}
}

// TestSingleByteDamage overwrites each byte of valid payloads with values
// that tend to change wire types, lengths and varint continuation bits.
func TestSingleByteDamage(t *testing.T) {
	var r remotewrite.Request
	accepted, rejected := 0, 0
	for name, b := range damagePayloads(t) {
		damaged := bytes.Clone(b)
		for i := range b {
			for _, v := range []byte{0x00, 0x7f, 0x80, 0xff, b[i] ^ 0x03, b[i] ^ 0x04, b[i] + 1} {
				damaged[i] = v
				if err := remotewritetest.Diff(&r, damaged); err != nil {
					t.Fatalf("%s with byte %d set to %#x: %v", name, i, v, err)
				}
				if len(r.Series) > 0 {
					accepted++ // still decodes to something
				} else {
					rejected++ // rejected, or decodes to nothing
				}
			}
			damaged[i] = b[i]
		}
	}
	if accepted == 0 || rejected == 0 {
		t.Fatalf("accepted %d, rejected %d damaged payloads: want some of each", accepted, rejected)
	}
}

// TestFieldNumberTruncation pins a gogo quirk the decoder copies: field
// numbers are cut to int32, so field 2^32+1 is read as field 1 (timeseries).
func TestFieldNumberTruncation(t *testing.T) {
	b := cat(tg(1+1<<32, 2), vint(0), upSeries())
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(b); err != nil || len(wr.Timeseries) != 2 {
		t.Fatalf("prompb: err %v, %d series; want field 2^32+1 read as timeseries", err, len(wr.Timeseries))
	}
	var r remotewrite.Request
	if err := r.Unmarshal(b); err != nil || len(r.Series) != 2 {
		t.Fatalf("remotewrite: err %v, %d series; want field 2^32+1 read as timeseries", err, len(r.Series))
	}
}
