package ring

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/wal/head"
)

// HandoffSource is the local store a handoff reads and trims.
type HandoffSource interface {
	AppendTenants(dst []string) []string
	AppendSeriesPart(dst []*head.Series, part int) []*head.Series
	// Held returns the series held in a found one's place, or nil (see
	// head.Head.Held): a checkpoint may move series to new objects.
	Held(s *head.Series) *head.Series
}

// Dropper removes handed-off series from the local store, durably: those
// of ss whose newest sample is still at ts[i], the one forwarded (see
// wal.Storage.Drop). It returns how many it removed.
type Dropper interface {
	Drop(ss []*head.Series, ts []int64) (int, error)
}

// handoffBatch is how many series go to a new owner in one forward.
const handoffBatch = 2000

// Handoff hands the held series of every tenant this instance no longer
// owns to its new owner: their newest samples are forwarded (in batches,
// as any push), and once a batch is on the owner's disk its series are
// dropped here. A tenant whose owner cannot take them keeps them here,
// hidden from /federate, until a later Handoff succeeds. It returns how
// many series moved.
//
// It runs every minute. Ownership is decided per tenant, so that with
// nothing to move it reads no series; with some, it walks the head a part
// at a time. (It used to snapshot every series and hash each one's tenant:
// at a million series, a 16 MB allocation a minute that started a Go GC
// cycle, and pushes stalled for a second behind it.)
func (r *Router) Handoff(ctx context.Context, src HandoffSource, drop Dropper, maxSeries func(tenant string) int) (int, error) {
	ring := r.cur.Load()
	gone := map[string]bool{}
	for _, tenant := range src.AppendTenants(nil) {
		if _, self := ring.Owner(tenant); !self {
			gone[tenant] = true
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	// The series found below stay readable until they are handed off, even
	// if they expire meanwhile.
	pin := head.PinSymbols()
	defer pin.Release()
	byTenant := map[string][]*head.Series{}
	var part []*head.Series
	for p := range head.SeriesParts {
		part = src.AppendSeriesPart(part[:0], p)
		for _, s := range part {
			if tenant := s.Tenant(); gone[tenant] && s.Committed() {
				byTenant[tenant] = append(byTenant[tenant], s)
			}
		}
	}
	clear(part)
	moved := 0
	var firstErr error
	// An owner that did not answer is not tried again in this run: each
	// try may wait the forward timeout, with the pin held. One that
	// answered, refusing a tenant's batch (a ring it does not agree with
	// yet, say), is tried with its other tenants.
	down := map[string]bool{}
	for tenant, ss := range byTenant {
		owner, _ := ring.Owner(tenant)
		if down[owner.Name] {
			continue
		}
		for len(ss) > 0 {
			n := min(len(ss), handoffBatch)
			chunk := ss[:n]
			ss = ss[n:]
			b := &head.Batch{Tenant: tenant, MaxSeries: maxSeries(tenant), Series: make([]head.BatchSeries, 0, n)}
			held, ts := chunk[:0], make([]int64, 0, n)
			for _, s := range chunk {
				if s = src.Held(s); s == nil {
					continue // expired since it was found
				}
				held = append(held, s)
				t, v := s.Latest()
				ts = append(ts, t)
				b.Series = append(b.Series, head.BatchSeries{Labels: s.AppendLabels(nil), Samples: []head.Sample{{T: t, V: v}}})
			}
			if chunk = held; len(chunk) == 0 {
				continue
			}
			err := r.Forward(ctx, owner, b)
			var limited *head.SeriesLimitError
			if err != nil && !errors.As(err, &limited) {
				if firstErr == nil {
					firstErr = fmt.Errorf("hand tenant %q off to %s: %w", tenant, owner.Name, err)
				}
				down[owner.Name] = errors.Is(err, errUnreachable)
				break // this tenant stays here for now
			}
			// Handed off (series the new owner refuses by its limit are
			// the owner's call, as for a push): drop them here, but for
			// those pushed here since (see Dropper); the next handoff
			// forwards their newer samples.
			dropped, err := drop.Drop(chunk, ts)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("drop tenant %q's handed-off series: %w", tenant, err)
				}
				break
			}
			moved += dropped
			r.metrics.handoff.Add(float64(dropped))
		}
	}
	return moved, firstErr
}

// handoffCounter is registered with the router's metrics.
func newHandoffCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fedgate_handoff_series_total",
		Help: "Series handed off to their new owner after a ring change.",
	})
}
