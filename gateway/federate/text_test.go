package federate

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
	"github.com/fedgate/fedgate/wal/head"
)

// referenceSample is appendSample written plainly, as it was before it was
// made fast: the oracle it must agree with, byte for byte.
func referenceSample(name string, ls head.Labels, t int64, v float64) string {
	type label struct{ name, value string }
	var set []label
	hasInstance := false
	for it := ls.Iter(); it.Next(); {
		if it.Name != "__name__" {
			set = append(set, label{it.Name, it.Value})
		}
		hasInstance = hasInstance || it.Name == "instance"
	}
	if !hasInstance {
		set = append(set, label{"instance", ""})
	}
	slices.SortStableFunc(set, func(a, b label) int { return strings.Compare(a.name, b.name) })
	escape := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	parts := make([]string, len(set))
	for i, l := range set {
		parts[i] = l.name + `="` + escape.Replace(l.value) + `"`
	}
	return name + "{" + strings.Join(parts, ",") + "} " + referenceFloat(v) + " " + strconv.FormatInt(t, 10) + "\n"
}

func referenceFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// packLabels packs kv (name, value, ...) as the head holds it: sorted by
// name, one label per name.
func packLabels(kv ...string) head.Labels {
	var pairs [][2]string
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, [2]string{kv[i], kv[i+1]})
	}
	slices.SortStableFunc(pairs, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	pairs = slices.CompactFunc(pairs, func(a, b [2]string) bool { return a[0] == b[0] })
	var b []byte
	for _, p := range pairs {
		b = head.AppendLabel(b, p[0], p[1])
	}
	return head.Labels(b)
}

func TestAppendSampleAgrees(t *testing.T) {
	check := func(ls head.Labels, ts int64, v float64) {
		t.Helper()
		if got, want := string(appendSample(nil, "m", ls.Iter(), ts, v)), referenceSample("m", ls, ts, v); got != want {
			t.Errorf("appendSample(%s, %d, %v (%#x)):\ngot  %q\nwant %q", ls, ts, v, math.Float64bits(v), got, want)
		}
	}
	// Values to escape, where the fast check must see them: alone, next to
	// each other, at the ends, and in values whose lengths (10, 34, 92) are
	// the bytes themselves in the packed form.
	for _, value := range []string{
		"", `\`, `"`, "\n", `a"b`, `"\"`, "x\n", `""`, strings.Repeat("a", 10), strings.Repeat("b", 34),
		strings.Repeat("c", 92), strings.Repeat("d", 33) + `"`, "é\"\\\n\n", `\\\\`,
	} {
		for _, name := range []string{"A", "a", "instance", "instancf", "job", "zz"} {
			check(packLabels("__name__", "m", name, value, "job", "j"), 1, 1)
		}
		check(packLabels("__name__", "m", "a", value, "b", value, "instance", value), 1, 1)
	}
	// Every float path: whole, three decimals, beyond, at the bounds of the
	// fast one, and the special values.
	values := []float64{
		0, math.Copysign(0, -1), 1, -1, 0.5, -0.5, 0.001, -0.001, 0.0005, 0.0001, 1e-5, 0.1, 0.3, 1.0 / 3,
		999999, 999999.999, -999999.999, 1e6, -1e6, 1e6 + 0.5, 123456.125, 1e21, 1 << 53, -(1 << 63),
		math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1), math.NaN(),
		math.Float64frombits(head.StaleNaN), 72922.125, 0.1 + 0.2, 1e-3 + 1e-9,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		scale := []float64{1, 8, 1000, 1e4, 3}[rng.IntN(5)]
		values = append(values, float64(rng.Int64N(2e9)-1e9)/scale, math.Float64frombits(rng.Uint64()))
	}
	ls := packLabels("__name__", "m", "job", "j")
	for _, v := range values {
		check(ls, -1, v)
	}
	// The series of the benchmark.
	for _, s := range remotewritetest.Kubernetes(2000, 1).Timeseries {
		var kv []string
		for _, l := range s.Labels {
			kv = append(kv, l.Name, l.Value)
		}
		check(packLabels(kv...), s.Samples[0].Timestamp, s.Samples[0].Value)
	}
}

// FuzzAppendSample: for any sorted label set, timestamp and value,
// appendSample writes what referenceSample does. names are split on ",",
// values on NUL.
func FuzzAppendSample(f *testing.F) {
	f.Add("cluster_id,container,instance,job", "t-007\x00coredns\x0010.0.0.1:8080\x00ns/coredns", int64(1700000000000), 72922.125)
	f.Add("a,b,instancf", "quote\" backslash\\\x00new\nline\x00", int64(-1), math.Copysign(0, -1))
	f.Add("A,i,zz", "\x00\x00\"", int64(0), 1e21)
	f.Add("__name__,job", "up\x00\\\\\\", int64(1), 0.001)
	f.Fuzz(func(t *testing.T, names, values string, ts int64, v float64) {
		if len(names)+len(values) > 4096 {
			t.Skip("input over the size cap")
		}
		kv := []string{"__name__", "m"}
		vs := strings.Split(values, "\x00")
		for i, n := range strings.Split(names, ",") {
			if i < len(vs) {
				kv = append(kv, n, vs[i])
			}
		}
		ls := packLabels(kv...)
		if got, want := string(appendSample(nil, "m", ls.Iter(), ts, v)), referenceSample("m", ls, ts, v); got != want {
			t.Fatalf("appendSample(%s, %d, %v):\ngot  %q\nwant %q", ls, ts, v, got, want)
		}
	})
}

// TestAppendSampleAllocs: a line is rendered into the caller's buffer,
// without allocating, on the fast path and the escaping one.
func TestAppendSampleAllocs(t *testing.T) {
	plain := packLabels("__name__", "m", "cluster_id", "a", "job", "node", "pod", "p-1")
	quoted := packLabels("__name__", "m", "cluster_id", "a", "job", `say "hi"`)
	buf := make([]byte, 0, 1024)
	for _, ls := range []head.Labels{plain, quoted} {
		if n := testing.AllocsPerRun(100, func() { buf = appendSample(buf[:0], "m", ls.Iter(), 1, 0.1) }); n != 0 {
			t.Errorf("appendSample(%s) allocates %v times", ls, n)
		}
	}
}
