// Package bench measures fedgate's hot path: go test benchmarks of each
// stage on realistic remote-write payloads (remotewritetest.Kubernetes).
//
// Benchmarks here never assert timings; `make test` runs each once so that
// they never rot, `make bench` runs them for real.
package bench
