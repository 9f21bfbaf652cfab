package main

import (
	"context"
	"iter"
	"time"
)

// shard yields, in sending order, the (round, request) pairs that sender w
// of c sends in rounds [from, to) of n requests each: requests w, w+c, ...
// of one round, then of the next. Only sender w ever sends request i%c == w,
// and it waits for each answer before the next push, so every series'
// samples arrive in timestamp order.
func shard(w, c, n, from, to int) iter.Seq2[int, int] {
	return func(yield func(round, i int) bool) {
		for round := from; round < to; round++ {
			for i := w; i < n; i += c {
				if !yield(round, i) {
					return
				}
			}
		}
	}
}

// schedule paces a phase open-loop at a fixed rate: its requests are due at
// fixed intervals, round by round and, within a round, by request index.
// Request i of the phase's round r (counted from 0) takes slot
// r*perRound + i and is due slot*gap after the phase starts.
//
// A shard's slots only increase in its sending order, so each sender waits
// for its next due time and sends, or sends at once when it is late (its
// previous request took longer than the slots in between). Latency is
// counted from the due time, not from the actual send: a receiver that
// falls behind shows it in the percentiles instead of quietly slowing the
// schedule down (no coordinated omission). At most one request per sender
// is in flight, so a receiver slower than the rate makes latencies grow
// with every round.
type schedule struct {
	rate     float64 // target samples per second
	perRound int     // requests per round
	gap      float64 // nanoseconds between consecutive due times
}

// newSchedule paces rounds of reqs at rate samples per second; nil when
// rate is 0 (as fast as possible). The gap is the mean request size over
// the rate, so a whole round of samples takes perRound gaps.
func newSchedule(reqs []*request, rate float64) *schedule {
	if rate <= 0 || len(reqs) == 0 {
		return nil
	}
	var samples int64
	for _, r := range reqs {
		samples += int64(r.samples)
	}
	return &schedule{
		rate:     rate,
		perRound: len(reqs),
		gap:      float64(samples) / float64(len(reqs)) / rate * float64(time.Second),
	}
}

// due is when request i of the phase's round r (counted from 0) is due,
// after the phase's start.
func (s *schedule) due(round, i int) time.Duration {
	return time.Duration(float64(round*s.perRound+i) * s.gap)
}

// waitUntil blocks until t or until ctx is done, and reports whether t came
// first.
func waitUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
