package remotewritetest

import (
	"encoding/binary"
	"math"
	"math/rand/v2"

	"github.com/prometheus/prometheus/prompb"
)

// StaleNaN is the bit pattern Prometheus writes as a staleness marker.
const StaleNaN uint64 = 0x7ff0000000000002

// Random returns the protobuf encoding of a random WriteRequest with the
// given number of series that prompb decodes without error. It goes out of
// its way to use what the wire format allows and real senders rarely do:
// 0 to 12 labels and 0 to 5 samples per series, empty strings, NaN payloads,
// ±Inf, negative timestamps, exemplars, native histograms (packed and not),
// metadata, the reserved field 2, unknown fields of every wire type
// (groups nested in groups), fields out of order and interleaved, scalars
// sent twice, non-minimal varints and field numbers above 2^32 that gogo
// truncates to a known one.
func Random(rng *rand.Rand, series int) []byte {
	g := gen{rng: rng}
	var fields [][]byte
	for range series {
		fields = append(fields, g.field(1, wireBytes, g.series()))
	}
	for range g.upTo(3) {
		fields = append(fields, g.field(3, wireBytes, g.metadata()))
	}
	if g.chance(0.3) {
		fields = append(fields, g.field(2, wireBytes, []byte("cortex source")))
	}
	for range g.upTo(3) {
		fields = append(fields, g.unknown(3))
	}
	g.maybeShuffle(fields, 0.5)
	return concat(fields)
}

const (
	wireVarint     = 0
	wireFixed64    = 1
	wireBytes      = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

type gen struct {
	rng *rand.Rand
}

func (g gen) chance(p float64) bool { return g.rng.Float64() < p }

// upTo returns 0..n, skewed towards 0.
func (g gen) upTo(n int) int {
	if g.chance(0.5) {
		return 0
	}
	return g.rng.IntN(n + 1)
}

func (g gen) maybeShuffle(fields [][]byte, p float64) {
	if g.chance(p) {
		g.rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	}
}

func concat(fields [][]byte) []byte {
	var b []byte
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

// varint appends v, now and then in a non-minimal encoding that gogo still
// accepts (padding with 0x80 bytes, up to 10 bytes in all).
func (g gen) varint(b []byte, v uint64) []byte {
	b = binary.AppendUvarint(b, v)
	if n := binary.PutUvarint(make([]byte, 10), v); n < 10 && g.chance(0.02) {
		pad := 1 + g.rng.IntN(10-n)
		b[len(b)-1] |= 0x80
		for range pad - 1 {
			b = append(b, 0x80)
		}
		b = append(b, 0)
	}
	return b
}

// tag appends a field tag. Now and then a known field number gets 2^32
// added, which gogo truncates away (int32(tag>>3)).
func (g gen) tag(b []byte, field int, wt int) []byte {
	f := uint64(field)
	if g.chance(0.01) {
		f += 1 << 32
	}
	return g.varint(b, f<<3|uint64(wt))
}

func (g gen) field(field, wt int, payload []byte) []byte {
	b := g.tag(nil, field, wt)
	if wt == wireBytes {
		b = g.varint(b, uint64(len(payload)))
	}
	return append(b, payload...)
}

func (g gen) series() []byte {
	var fields [][]byte
	for range g.rng.IntN(13) {
		fields = append(fields, g.field(1, wireBytes, g.label()))
	}
	for range g.rng.IntN(6) {
		fields = append(fields, g.field(2, wireBytes, g.sample()))
	}
	for range g.upTo(2) {
		fields = append(fields, g.field(3, wireBytes, g.exemplar()))
	}
	for range g.upTo(2) {
		fields = append(fields, g.field(4, wireBytes, g.histogram()))
	}
	for range g.upTo(2) {
		fields = append(fields, g.unknown(5))
	}
	g.maybeShuffle(fields, 0.3)
	return concat(fields)
}

func (g gen) label() []byte {
	var fields [][]byte
	name, value := g.labelName(), g.labelValue()
	if g.chance(0.1) { // sent twice: the last one wins
		fields = append(fields, g.field(2, wireBytes, []byte(g.labelValue())))
	}
	if name != "" || g.chance(0.5) {
		fields = append(fields, g.field(1, wireBytes, []byte(name)))
	}
	if value != "" || g.chance(0.5) {
		fields = append(fields, g.field(2, wireBytes, []byte(value)))
	}
	for range g.upTo(1) {
		fields = append(fields, g.unknown(3))
	}
	if g.chance(0.2) {
		g.rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	}
	return concat(fields)
}

func (g gen) labelName() string {
	names := [...]string{"__name__", "namespace", "pod", "container", "instance", "job", "node", "le", "quantile", "", "a", "label_with_a_rather_long_name_for_a_label_name"}
	return names[g.rng.IntN(len(names))]
}

func (g gen) labelValue() string {
	values := [...]string{
		"", "kube-system", "coredns-5d78c9869d-8xk2p", "10.0.3.17:9100", "+Inf", "0.005",
		"ip-10-0-1-23.eu-west-1.compute.internal", "ünïcödé ✓", "\x00\xff not utf-8",
		string(make([]byte, 300)),
	}
	return values[g.rng.IntN(len(values))]
}

func (g gen) sample() []byte {
	var fields [][]byte
	bits, ts := g.valueBits(), g.timestamp()
	if g.chance(0.1) { // sent twice: the last one wins
		fields = append(fields, g.fixed64(1, g.valueBits()), g.varintField(2, uint64(g.timestamp())))
	}
	if bits != 0 || g.chance(0.5) {
		fields = append(fields, g.fixed64(1, bits))
	}
	if ts != 0 || g.chance(0.5) {
		fields = append(fields, g.varintField(2, uint64(ts)))
	}
	for range g.upTo(1) {
		fields = append(fields, g.unknown(3))
	}
	if len(fields) > 1 && g.chance(0.2) {
		fields[0], fields[len(fields)-1] = fields[len(fields)-1], fields[0]
	}
	return concat(fields)
}

func (g gen) valueBits() uint64 {
	switch g.rng.IntN(10) {
	case 0:
		return math.Float64bits(math.NaN())
	case 1:
		return StaleNaN
	case 2:
		return math.Float64bits(math.Inf(1))
	case 3:
		return math.Float64bits(math.Inf(-1))
	case 4:
		return math.Float64bits(math.Copysign(0, -1))
	case 5:
		return 0
	case 6:
		return 0x7ff8dead0000beef // a NaN with a payload
	case 7:
		return 1 // smallest subnormal
	}
	return math.Float64bits(g.rng.NormFloat64() * 1e6)
}

func (g gen) timestamp() int64 {
	switch g.rng.IntN(6) {
	case 0:
		return 0
	case 1:
		return -g.rng.Int64N(1 << 50)
	case 2:
		return math.MinInt64
	case 3:
		return math.MaxInt64
	}
	return 1_700_000_000_000 + g.rng.Int64N(1<<30)
}

func (g gen) fixed64(field int, v uint64) []byte {
	return binary.LittleEndian.AppendUint64(g.tag(nil, field, wireFixed64), v)
}

func (g gen) varintField(field int, v uint64) []byte {
	return g.varint(g.tag(nil, field, wireVarint), v)
}

func (g gen) exemplar() []byte {
	e := prompb.Exemplar{Value: math.Float64frombits(g.valueBits()), Timestamp: g.timestamp()}
	for range g.rng.IntN(3) {
		e.Labels = append(e.Labels, prompb.Label{Name: g.labelName(), Value: g.labelValue()})
	}
	if g.chance(0.3) {
		e.XXX_unrecognized = g.unknown(3)
	}
	return mustMarshal(e.Marshal())
}

func (g gen) histogram() []byte {
	h := prompb.Histogram{
		Sum:           g.rng.Float64() * 100,
		Schema:        int32(g.rng.IntN(13)) - 4,
		ZeroThreshold: 1e-128,
		ResetHint:     prompb.Histogram_ResetHint(g.rng.IntN(4)),
		Timestamp:     g.timestamp(),
	}
	spans := func() []prompb.BucketSpan {
		s := make([]prompb.BucketSpan, g.rng.IntN(3))
		for i := range s {
			s[i] = prompb.BucketSpan{Offset: int32(g.rng.IntN(7)) - 3, Length: uint32(g.rng.IntN(4))}
		}
		return s
	}
	h.NegativeSpans, h.PositiveSpans = spans(), spans()
	if g.chance(0.5) {
		h.Count = &prompb.Histogram_CountInt{CountInt: g.rng.Uint64()}
		h.ZeroCount = &prompb.Histogram_ZeroCountInt{ZeroCountInt: uint64(g.rng.IntN(100))}
		for range g.rng.IntN(5) {
			h.NegativeDeltas = append(h.NegativeDeltas, g.rng.Int64N(200)-100)
			h.PositiveDeltas = append(h.PositiveDeltas, g.rng.Int64()>>g.rng.IntN(64))
		}
	} else {
		h.Count = &prompb.Histogram_CountFloat{CountFloat: g.rng.Float64() * 1000}
		h.ZeroCount = &prompb.Histogram_ZeroCountFloat{ZeroCountFloat: g.rng.Float64()}
		for range g.rng.IntN(5) {
			h.NegativeCounts = append(h.NegativeCounts, g.rng.Float64())
			h.PositiveCounts = append(h.PositiveCounts, g.rng.Float64())
		}
		if g.chance(0.2) {
			h.CustomValues = []float64{0.1, 1, 10}
		}
	}
	b := mustMarshal(h.Marshal())
	if g.chance(0.3) { // repeated scalars may also come unpacked
		b = append(b, g.varintField(12, uint64(g.rng.IntN(1000)))...)
		b = append(b, g.fixed64(13, g.valueBits())...)
		b = append(b, g.fixed64(16, g.valueBits())...)
	}
	if g.chance(0.3) {
		b = append(b, g.unknown(3)...)
	}
	return b
}

func (g gen) metadata() []byte {
	m := prompb.MetricMetadata{
		Type:             prompb.MetricMetadata_MetricType(g.rng.IntN(8)),
		MetricFamilyName: g.labelValue(),
		Help:             "Total number of things that happened.",
		Unit:             []string{"", "seconds", "bytes"}[g.rng.IntN(3)],
	}
	if g.chance(0.3) {
		m.XXX_unrecognized = g.unknown(3)
	}
	return mustMarshal(m.Marshal())
}

// unknown returns one field no message here knows (numbers 20 and up), of a
// random wire type. A group holds up to 3 more unknown fields, down to the
// given depth; inside a group any field number goes, 0 and known ones too,
// and the closing tag need not repeat the opening field number.
func (g gen) unknown(depth int) []byte {
	field := 20 + g.rng.IntN(1000)
	if g.chance(0.1) {
		field = 1<<29 - 1 // the largest legal field number
	}
	return g.unknownField(field, depth)
}

func (g gen) unknownField(field, depth int) []byte {
	wt := []int{wireVarint, wireFixed64, wireBytes, wireFixed32, wireStartGroup}[g.rng.IntN(5)]
	if wt == wireStartGroup && depth == 0 {
		wt = wireBytes
	}
	b := g.varint(nil, uint64(field)<<3|uint64(wt))
	switch wt {
	case wireVarint:
		return g.varint(b, g.rng.Uint64()>>g.rng.IntN(64))
	case wireFixed64:
		return binary.LittleEndian.AppendUint64(b, g.rng.Uint64())
	case wireFixed32:
		return binary.LittleEndian.AppendUint32(b, g.rng.Uint32())
	case wireBytes:
		payload := make([]byte, g.rng.IntN(20))
		for i := range payload {
			payload[i] = byte(g.rng.IntN(256))
		}
		return append(g.varint(b, uint64(len(payload))), payload...)
	}
	for range g.rng.IntN(4) {
		b = append(b, g.unknownField(g.rng.IntN(8), depth-1)...)
	}
	end := field
	if g.chance(0.2) {
		end = g.rng.IntN(100)
	}
	return g.varint(b, uint64(end)<<3|wireEndGroup)
}

func mustMarshal(b []byte, err error) []byte {
	if err != nil {
		panic("remotewritetest: marshal: " + err.Error())
	}
	return b
}

// Head returns the longest prefix of b, at most max bytes, that ends between
// two top-level fields and holds at least one series or metadata entry: a
// smaller valid request cut from a real one. It returns nil if there is none.
func Head(b []byte, max int) []byte {
	for n := min(max, len(b)); n > 0; n-- {
		var wr prompb.WriteRequest
		if wr.Unmarshal(b[:n]) == nil && len(wr.Timeseries)+len(wr.Metadata) > 0 {
			return b[:n]
		}
	}
	return nil
}
