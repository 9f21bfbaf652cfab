package gateway

import (
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// bucket is a token bucket over samples. It may go into debt: a request
// larger than the burst is admitted when the bucket holds a full burst, and
// the debt is paid back at the ingestion rate before the next one.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
	primed bool
}

func (b *bucket) refill(now time.Time, rate, burst float64) {
	if !b.primed {
		b.tokens, b.last, b.primed = burst, now, true
		return
	}
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = math.Min(burst, b.tokens+d*rate)
		b.last = now
	}
}

// admit takes n tokens if the bucket holds min(n, burst) of them; otherwise
// it takes nothing and says how long until it would. With take false it
// only asks.
func (b *bucket) admit(now time.Time, n, rate, burst float64, take bool) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now, rate, burst)
	need := math.Min(math.Max(n, 1), burst)
	if b.tokens >= need {
		if take {
			b.tokens -= n
		}
		return true, 0
	}
	return false, time.Duration((need - b.tokens) / rate * float64(time.Second))
}

// refund gives back n tokens taken for samples that were not stored (the
// store failed, or refused them by the series limit), up to the burst: a
// sender retrying through an outage on this side must not find its bucket
// drained by samples it never got stored.
func (b *bucket) refund(n, burst float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = math.Min(burst, b.tokens+n)
}

// tenantState is what the write path keeps per tenant across requests and
// reloads: its bucket, what limited it, and when it last logged why.
type tenantState struct {
	id     string
	bucket bucket
	// slots holds a token per request of the tenant holding one of the
	// handler's slots: at most three quarters of them, so that one
	// tenant's backlog or slow owner leaves the others room.
	slots chan struct{}
	// lastSamples is the size of the tenant's last decoded request:
	// senders send batches of similar size, so a bucket that cannot cover
	// it is answered before the next body is read.
	lastSamples atomic.Int64

	rateLimited   atomic.Int64 // requests refused by the ingestion rate
	seriesLimited atomic.Int64 // samples refused by max_series
	discarded     atomic.Int64 // samples discarded for any reason
	lastRate      atomic.Int64 // unix ns of the last rate refusal
	lastSeries    atomic.Int64 // unix ns of the last series-limit refusal

	logMu  sync.Mutex
	logged map[string]time.Time // reason -> last log line
}

// logEvery bounds log lines about one tenant's refusals, per reason.
const logEvery = time.Minute

// logRefusal logs a refusal at most once per tenant, reason and minute,
// with how many were not logged in between; a flood costs no log volume.
func (t *tenantState) logRefusal(logger *slog.Logger, now time.Time, reason string, code int, msg string) {
	t.logMu.Lock()
	last, ok := t.logged[reason]
	if ok && now.Sub(last) < logEvery {
		t.logMu.Unlock()
		return
	}
	if t.logged == nil {
		t.logged = make(map[string]time.Time)
	}
	t.logged[reason] = now
	t.logMu.Unlock()
	logger.Warn("write refused", "tenant", t.id, "reason", reason, "status", code, "err", msg,
		"note", "logged at most once a minute per tenant and reason; see fedgate_discarded_samples_total")
}

// tenants holds every tenantState, created on first use.
type tenants struct {
	mu sync.RWMutex
	m  map[string]*tenantState
	// slots is how many write slots one tenant may hold (see
	// WriteHandler.acquire).
	slots int
}

func (ts *tenants) get(id string) *tenantState {
	ts.mu.RLock()
	t := ts.m[id]
	ts.mu.RUnlock()
	if t != nil {
		return t
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t = ts.m[id]; t == nil {
		if ts.m == nil {
			ts.m = make(map[string]*tenantState)
		}
		t = &tenantState{id: id, slots: make(chan struct{}, max(1, ts.slots))}
		ts.m[id] = t
	}
	return t
}

// TenantStats is one tenant's view for operators: what limited it.
type TenantStats struct {
	ID                   string
	RateLimitedRequests  int64
	SeriesLimitedSamples int64
	DiscardedSamples     int64
	LastLimited          time.Time // zero if never
}

// Stats returns every tenant seen so far, sorted by ID.
func (ts *tenants) stats() []TenantStats {
	ts.mu.RLock()
	out := make([]TenantStats, 0, len(ts.m))
	for _, t := range ts.m {
		s := TenantStats{ID: t.id, RateLimitedRequests: t.rateLimited.Load(),
			SeriesLimitedSamples: t.seriesLimited.Load(), DiscardedSamples: t.discarded.Load()}
		if last := max(t.lastRate.Load(), t.lastSeries.Load()); last > 0 {
			s.LastLimited = time.Unix(0, last)
		}
		out = append(out, s)
	}
	ts.mu.RUnlock()
	slices.SortFunc(out, func(a, b TenantStats) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// limitedWithin counts tenants refused by the rate (series=false) or the
// series limit (series=true) since the given time.
func (ts *tenants) limitedWithin(since time.Time, series bool) int {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	n := 0
	for _, t := range ts.m {
		last := t.lastRate.Load()
		if series {
			last = t.lastSeries.Load()
		}
		if last >= since.UnixNano() {
			n++
		}
	}
	return n
}
