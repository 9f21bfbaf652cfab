package gateway

import (
	"strings"
	"testing"

	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite"
)

// TestPackValidUTF8 pins the one-pass ASCII check: every placement of a
// bad or a good non-ASCII byte, in short and long (length over 127, a
// two-byte length) values, at each offset of the 8-byte words.
func TestPackValidUTF8(t *testing.T) {
	lim := &config.Limits{MaxLabelNameLength: 1024, MaxLabelValueLength: 4096}
	for _, n := range []int{0, 1, 7, 8, 9, 100, 127, 128, 300} {
		for _, c := range []struct {
			insert string
			valid  bool
		}{{"", true}, {"é", true}, {"日本", true}, {"\xff", false}, {"\xc3", false}, {"a\x80", false}} {
			for at := 0; at <= min(n, 9); at++ {
				v := strings.Repeat("x", n)
				v = v[:at] + c.insert + v[at:]
				ls := []remotewrite.Label{{Name: "__name__", Value: "up"}, {Name: "a", Value: v}, {Name: "job", Value: "j"}}
				packed, reason, _ := packValid([]byte("prefix"), ls, lim)
				if got := reason == ""; got != c.valid {
					t.Fatalf("value %q: valid %v, want %v (%s)", v, got, c.valid, reason)
				}
				if c.valid && len(packed) <= len("prefix") || !c.valid && (reason != reasonInvalidUTF8 || string(packed) != "prefix") {
					t.Fatalf("value %q: packed %q, reason %q", v, packed, reason)
				}
			}
		}
	}
}

func TestIsASCII(t *testing.T) {
	for n := range 40 {
		b := []byte(strings.Repeat("a", n))
		if !isASCII(b) {
			t.Fatalf("%d ASCII bytes: not ASCII", n)
		}
		for i := range n {
			b[i] = 0x80
			if isASCII(b) {
				t.Fatalf("0x80 at %d of %d: ASCII", i, n)
			}
			b[i] = 'a'
		}
	}
}
