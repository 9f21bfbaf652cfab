package fuzz

import (
	"math/rand/v2"
	"testing"

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
	for _, b := range capturedSeeds(f, maxSeedSize) {
		f.Add(b)
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
