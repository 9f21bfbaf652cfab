// Package remotewritetest helps test code that decodes remote-write 1.0
// requests: it builds payloads (realistic ones for benchmarks, adversarial
// but valid ones for differential tests) and checks the remotewrite decoder
// against the reference, prompb.WriteRequest.Unmarshal.
//
// It is for tests, benchmarks and fuzz targets only; production code never
// imports it (it pulls in prompb). Nothing in it is safe for concurrent use
// with a shared *rand.Rand or *remotewrite.Request.
package remotewritetest
