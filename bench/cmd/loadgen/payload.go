package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/fedgate/fedgate/gateway/remotewrite/remotewritetest"
)

// request is one pre-encoded push: a tenant's fixed slice of series, for
// every round.
type request struct {
	tenant  int
	samples int
	bodies  [][]byte // snappy-compressed WriteRequest, one per round
}

// encode builds every request body of every round. Round r stamps each
// series with firstTS + r*stepMs and a value that changes every round.
func encode(c Config, rounds int, firstTS, stepMs int64) ([]*request, int64, error) {
	tmpl := remotewritetest.Kubernetes(c.SeriesPerTenant, 1)
	perTenant := (c.SeriesPerTenant + c.SeriesPerRequest - 1) / c.SeriesPerRequest
	reqs := make([]*request, c.Tenants*perTenant)

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    int64
		firstErr error
	)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for t := range c.Tenants {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			series := tenantSeries(tmpl, c.TenantLabel, tenantID(t))
			var size int64
			var buf []byte
			for k := range perTenant {
				chunk := series[k*c.SeriesPerRequest : min((k+1)*c.SeriesPerRequest, len(series))]
				r := &request{tenant: t, samples: len(chunk), bodies: make([][]byte, rounds)}
				for round := range rounds {
					for i := range chunk {
						chunk[i].Samples[0] = prompb.Sample{
							Timestamp: firstTS + int64(round)*stepMs,
							Value:     tmpl.Timeseries[k*c.SeriesPerRequest+i].Samples[0].Value + float64(round),
						}
					}
					wr := prompb.WriteRequest{Timeseries: chunk}
					need := wr.Size()
					if cap(buf) < need {
						buf = make([]byte, need)
					}
					n, err := wr.MarshalToSizedBuffer(buf[:need])
					if err != nil {
						mu.Lock()
						firstErr = fmt.Errorf("marshal tenant %d request %d: %w", t, k, err)
						mu.Unlock()
						return
					}
					r.bodies[round] = snappy.Encode(nil, buf[need-n:need])
					size += int64(len(r.bodies[round]))
				}
				reqs[t*perTenant+k] = r
			}
			mu.Lock()
			total += size
			mu.Unlock()
		}()
	}
	wg.Wait()
	return reqs, total, firstErr
}

// tenantSeries copies the template's series for one tenant, with the
// tenant label added (in sorted position) when label is set.
func tenantSeries(tmpl *prompb.WriteRequest, label, tenant string) []prompb.TimeSeries {
	out := make([]prompb.TimeSeries, len(tmpl.Timeseries))
	for i, ts := range tmpl.Timeseries {
		ls := slices.Clone(ts.Labels)
		if label != "" {
			ls = append(ls, prompb.Label{Name: label, Value: tenant})
			slices.SortFunc(ls, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) })
		}
		out[i] = prompb.TimeSeries{Labels: ls, Samples: make([]prompb.Sample, 1)}
	}
	return out
}
