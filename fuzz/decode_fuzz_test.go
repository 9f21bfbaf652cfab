package fuzz

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/golang/snappy"

	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
)

const (
	// maxDecodeInput caps fuzz inputs; bigger ones only make iterations slow.
	maxDecodeInput = 1 << 20
	// maxSeedSize caps the captured payloads used as seeds.
	maxSeedSize = 2 << 10
)

// FuzzDecodeWriteRequest checks the zero-copy remote-write decoder against
// prompb.WriteRequest.Unmarshal on arbitrary bytes: both must accept or
// both reject, and on acceptance yield the same series, labels and sample
// bits (remotewritetest.Diff lists every property). The decoding Request is
// first filled from another payload, so reuse is fuzzed as well.
func FuzzDecodeWriteRequest(f *testing.F) {
	captured, err := filepath.Glob("../gateway/remotewrite/testdata/*.snappy")
	if err != nil {
		f.Fatal(err)
	}
	if len(captured) == 0 {
		f.Fatal("no captured payloads in ../gateway/remotewrite/testdata")
	}
	for _, name := range captured {
		compressed, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		b, err := snappy.Decode(nil, compressed)
		if err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		// Whole top-level fields from the start of the payload, not all of
		// it: the fuzzer minimizes every new interesting input for up to
		// a minute, and minimizing a 30 KB one ate whole 60 s runs.
		head := remotewritetest.Head(b, maxSeedSize)
		if head == nil {
			f.Fatalf("%s: no valid prefix of at most %d bytes", name, maxSeedSize)
		}
		f.Add(head)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for n := range 8 {
		f.Add(remotewritetest.Random(rng, n))
	}
	f.Add(remotewritetest.KubernetesBytes(3, 2))
	f.Add([]byte{})

	warm := remotewritetest.KubernetesBytes(20, 1)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxDecodeInput {
			t.Skip("input over the size cap")
		}
		var r remotewrite.Request
		if err := r.Unmarshal(warm); err != nil {
			t.Fatal(err)
		}
		if err := remotewritetest.Diff(&r, b); err != nil {
			t.Fatal(err)
		}
	})
}
