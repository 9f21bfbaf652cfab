package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/gateway/auth"
	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/remotewrite"
	"github.com/fedgate/fedgate/gateway/turns"
	"github.com/fedgate/fedgate/relabel"
	"github.com/fedgate/fedgate/wal/codec"
	"github.com/fedgate/fedgate/wal/head"
)

// Storage stores one tenant's processed series. Append returns only when
// the samples are stored; an error wrapping ErrUnavailable is answered 503.
type Storage interface {
	Append(ctx context.Context, b *head.Batch) error
}

// Settings are the parts of the configuration the write path reads. They
// are replaced whole, so a request sees one consistent version.
type Settings struct {
	Auth         *auth.Authenticator
	ClusterLabel string
	Limits       config.Limits            // for tenants without their own
	TenantLimits map[string]config.Limits // by tenant ID
	// Pipelines holds each tenant's allowlist, relabel rules and
	// anonymized labels; a tenant without any has none.
	Pipelines map[string]*relabel.Pipeline
}

// anonymizerCacheSize is how many anonymized values are remembered.
const anonymizerCacheSize = 1 << 17

// NewSettings derives the write path's settings from a configuration file.
func NewSettings(f *config.File) (*Settings, error) {
	creds := make([]auth.Credential, 0, len(f.Tenants))
	s := &Settings{ClusterLabel: f.ClusterLabel, Limits: f.Limits, TenantLimits: make(map[string]config.Limits, len(f.Tenants)),
		Pipelines: make(map[string]*relabel.Pipeline)}
	var anon *relabel.Anonymizer
	if len(f.Anonymize.Secret) > 0 {
		var err error
		if anon, err = relabel.NewAnonymizer(f.Anonymize.Secret, anonymizerCacheSize); err != nil {
			return nil, err
		}
	}
	var memo *relabel.Memo
	if f.RelabelCacheSize > 0 {
		var err error
		if memo, err = relabel.NewMemo(f.RelabelCacheSize); err != nil {
			return nil, err
		}
	}
	for i := range f.Tenants {
		t := &f.Tenants[i]
		rules := slices.Concat(f.RelabelConfigs, t.RelabelConfigs)
		p, err := relabel.NewPipeline(t.ID, f.Allowlist, rules, f.AnonymizedLabels(t), anon, memo)
		if err != nil {
			return nil, fmt.Errorf("tenant %q: %w", t.ID, err)
		}
		if p != nil {
			s.Pipelines[t.ID] = p
		}
	}
	for _, t := range f.Tenants {
		c := auth.CredentialFromToken(t.ID, t.Token)
		if t.TokenSHA256 != "" {
			var err error
			if c, err = auth.CredentialFromDigest(t.ID, t.TokenSHA256); err != nil {
				return nil, err
			}
		}
		creds = append(creds, c)
		s.TenantLimits[t.ID] = t.Limits
	}
	a, err := auth.New(creds)
	if err != nil {
		return nil, err
	}
	s.Auth = a
	return s, nil
}

func (s *Settings) limits(tenant string) *config.Limits {
	if l, ok := s.TenantLimits[tenant]; ok {
		return &l
	}
	return &s.Limits
}

// WriteOptions are the write path's process-wide bounds.
type WriteOptions struct {
	// MaxConcurrent bounds the requests read, decoded and stored at once;
	// 0 means 64.
	MaxConcurrent int
	// QueueTimeout is how long a request may wait for one of those slots
	// before it is answered 503; 0 means one second.
	QueueTimeout time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Decoding, if not nil, holds the decoding turns, to share them with
	// the other handlers that decode on this instance (the peer endpoint:
	// see ring.PeerHandler.ShareTurns), so that no more requests than CPUs
	// decode at once in all. nil: the handler's own.
	Decoding *turns.Turns
	// NotReady, if not nil, is the storage's error for not ready yet (or
	// any more): a push it fails with is told so. Any other failed store
	// is told only to retry; its cause is logged.
	NotReady error
	// Head, if not nil, is the head the storage appends to on this
	// instance. Its memo of known series lets a push whose series were
	// seen before skip their validation and the head's lookup (see
	// resolveKnown).
	Head *head.Head
}

// WriteHandler serves POST /api/v1/write.
type WriteHandler struct {
	settings atomic.Pointer[Settings]
	storage  Storage
	opts     WriteOptions
	slots    chan struct{} // a token per request being processed
	tenants  tenants
	logger   *slog.Logger
	metrics  *writeMetrics
	pool     sync.Pool    // of *writeState
	inputs   sync.Pool    // of *input
	decoding *turns.Turns // a turn per request decoding, one per CPU
}

// NewWriteHandler returns a handler storing into st.
func NewWriteHandler(s *Settings, st Storage, opts WriteOptions, logger *slog.Logger, reg prometheus.Registerer) *WriteHandler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 64
	}
	if opts.QueueTimeout <= 0 {
		opts.QueueTimeout = time.Second
	}
	if opts.Decoding == nil {
		opts.Decoding = new(turns.Turns)
	}
	h := &WriteHandler{storage: st, opts: opts, slots: make(chan struct{}, opts.MaxConcurrent), logger: logger, decoding: opts.Decoding}
	h.tenants.slots = opts.MaxConcurrent * 3 / 4
	h.metrics = newWriteMetrics(reg, h)
	h.settings.Store(s)
	h.inputs.New = func() any { return new(input) }
	h.pool.New = func() any {
		st := new(writeState)
		st.release = func() { h.releaseInput(st) }
		return st
	}
	return h
}

// TenantStats returns what limited each tenant seen since startup.
func (h *WriteHandler) TenantStats() []TenantStats { return h.tenants.stats() }

// Apply replaces the settings; requests already running keep the old ones.
func (h *WriteHandler) Apply(s *Settings) { h.settings.Store(s) }

// writeState is everything one request needs, pooled.
type writeState struct {
	body []byte // as sent
	// The decoded request and its labels: taken once the body is in, for
	// at most one request per CPU at a time, and given back as soon as
	// the storage has read the batch's labels (head.Batch.ReleaseLabels),
	// so that requests waiting for their fsync hold only their body and
	// samples. (The number of turns is GOMAXPROCS, as it is when asked.)
	*input
	release   func() // h.releaseInput(st), made once per state
	holdsTurn bool   // of h.decoding
	pin       head.SymbolPin
	pinned    bool // pin is held

	samples []head.Sample
	ends    []seriesEnd
	batch   head.Batch
	// rejection bookkeeping
	rejectedSeries int
	firstReason    string
	discarded      map[string]int

	// A chunk's memo keys and candidates (see lookAhead), and where
	// Touch's reads go.
	keys  [lookAhead]uint64
	known [lookAhead]*head.Series
	sink  byte
}

// input is the part of a writeState that holds the request itself.
type input struct {
	raw     []byte
	req     remotewrite.Request
	scratch []remotewrite.Label
	relabel relabel.State
	packed  []byte
}

// seriesEnd records where a batch series' labels and samples end in the
// flat buffers (slices are cut only once the buffers stop growing), and
// its memo key and known series (see resolveKnown).
type seriesEnd struct {
	packed, samples int
	key             uint64
	known           *head.Series
}

// An input or writeState holding more than this is not kept in its pool.
const maxPooledState = 48 << 20

// footprint returns the bytes the input's buffers hold.
func (in *input) footprint() int {
	return cap(in.raw) + in.req.Footprint() +
		cap(in.scratch)*int(unsafe.Sizeof(remotewrite.Label{})) + cap(in.packed)
}

func (in *input) reset() {
	in.req.Reset()
	in.packed = in.packed[:0]
}

// footprint returns the bytes the state's own buffers hold.
func (st *writeState) footprint() int {
	return cap(st.body) + cap(st.samples)*int(unsafe.Sizeof(head.Sample{})) + cap(st.ends)*int(unsafe.Sizeof(seriesEnd{})) +
		cap(st.batch.Series)*int(unsafe.Sizeof(head.BatchSeries{}))
}

func (st *writeState) reset() {
	st.body = st.body[:0]
	st.samples = st.samples[:0]
	clear(st.ends) // their known series may since have been removed
	st.ends = st.ends[:0]
	clear(st.batch.Series) // their labels point into a released input
	st.batch.Series = st.batch.Series[:0]
	st.batch.Tenant = ""
	st.rejectedSeries = 0
	st.firstReason = ""
	clear(st.discarded)
}

func (st *writeState) discard(reason string, n int) {
	if st.discarded == nil {
		st.discarded = make(map[string]int)
	}
	st.discarded[reason] += n
}

func (st *writeState) reject(reason, msg string, samples int, ls []remotewrite.Label) {
	st.rejectedSeries++
	st.discard(reason, samples)
	if st.firstReason == "" {
		st.firstReason = msg + " in series " + describeSeries(ls)
	}
}

func (h *WriteHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := h.pool.Get().(*writeState)
	ten, err := h.serve(w, r, st)
	code := statusOf(err)
	h.putState(st)

	if err != nil {
		msg := err.Error()
		switch code {
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Bearer realm="fedgate", Basic realm="fedgate"`)
		case http.StatusTooManyRequests:
			w.Header().Set("Retry-After", retryAfterSeconds(err))
		}
		switch {
		case code >= 500:
			h.logger.Warn("write failed", "status", code, "err", logged(err))
		case ten != nil:
			ten.logRefusal(h.logger, h.opts.Now(), refusalReason(err), code, msg)
		default:
			h.logger.Debug("write refused", "status", code, "err", msg, "remote", r.RemoteAddr)
		}
		http.Error(w, msg, code)
	} else {
		w.WriteHeader(code)
	}
	c := strconv.Itoa(code)
	h.metrics.requests.WithLabelValues(c).Inc()
	h.metrics.duration.WithLabelValues(c).Observe(time.Since(start).Seconds())
}

// refusalReason names a refusal for per-tenant log throttling.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, errRateLimited):
		return reasonRateLimited
	case errors.Is(err, head.ErrSeriesLimit):
		return reasonSeriesLimit
	case errors.Is(err, errTooLarge):
		return "too_large"
	case errors.Is(err, errUnsupportedMedia):
		return "unsupported_media_type"
	case errors.Is(err, remotewrite.ErrMalformed):
		return "malformed"
	}
	return "invalid_series"
}

// putState pools st; its input went back already (serve gives it back at
// the latest when it returns).
func (h *WriteHandler) putState(st *writeState) {
	if st.footprint() > maxPooledState {
		return // a rare huge request: let its buffers go
	}
	st.reset()
	h.pool.Put(st)
}

// takeInput waits for a decoding turn and gives st an input (st's own,
// if it has one).
func (h *WriteHandler) takeInput(ctx context.Context, st *writeState) error {
	if err := h.decoding.Acquire(ctx); err != nil {
		return fmt.Errorf("%w: client gone while queued", errOverloaded)
	}
	if st.input == nil {
		st.input = h.inputs.Get().(*input)
	}
	st.holdsTurn = true
	return nil
}

// releaseInput gives st's input back to its pool, its decoding turn back
// and its symbol pin up, once: nothing of the request's decoded bytes or
// labels, nor of the memo's candidates, may be read after it.
func (h *WriteHandler) releaseInput(st *writeState) {
	if st.holdsTurn {
		st.holdsTurn = false
		h.decoding.Release()
	}
	if st.pinned {
		st.pinned = false
		st.pin.Release()
	}
	in := st.input
	if in == nil {
		return
	}
	st.input = nil
	if in.footprint() > maxPooledState {
		return
	}
	in.reset()
	h.inputs.Put(in)
}

func (h *WriteHandler) serve(w http.ResponseWriter, r *http.Request, st *writeState) (*tenantState, error) {
	if r.Method != http.MethodPost {
		return nil, fmt.Errorf("%w: %s", errMethod, r.Method)
	}
	set := h.settings.Load()
	tenant, ok := set.Auth.Authenticate(r)
	if !ok {
		return nil, fmt.Errorf("%w: missing or wrong credentials", errUnauthorized)
	}
	ten := h.tenants.get(tenant)
	if err := checkMediaType(r.Header); err != nil {
		return ten, err
	}
	lim := set.limits(tenant)

	// A bucket that cannot cover a request the size of the tenant's last
	// one is answered before the body is read: a flood costs almost
	// nothing.
	now := h.opts.Now()
	if ok, wait := ten.bucket.admit(now, float64(ten.lastSamples.Load()), lim.IngestionRate, float64(lim.IngestionBurst), false); !ok {
		return ten, h.rateLimited(ten, now, wait, 0)
	}
	maxBody := lim.MaxRequestBodyBytes
	if r.ContentLength > int64(maxBody) {
		return ten, fmt.Errorf("%w: body of %d bytes, more than the limit of %d", errTooLarge, r.ContentLength, maxBody)
	}

	// Bound the requests read, decoded and stored at once, in all and per
	// tenant: a brief queue, then 503, which senders retry.
	if err := h.acquire(r, ten); err != nil {
		return ten, err
	}
	defer func() { <-h.slots; <-ten.slots }()

	// The body is read through a limit, and the decoded size is checked
	// before anything of that size is allocated.
	body, err := codec.ReadLimited(st.body[:0], http.MaxBytesReader(w, r.Body, int64(maxBody)), r.ContentLength, maxBody)
	st.body = body
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return ten, fmt.Errorf("%w: body larger than the limit of %d bytes", errTooLarge, maxBody)
		}
		// Slow or broken clients: 503, so a sender on a bad link retries;
		// the answer names no addresses.
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return ten, fmt.Errorf("%w: the request body did not arrive within the read timeout", ErrUnavailable)
		}
		return ten, fmt.Errorf("%w: the connection failed while the body was read", ErrUnavailable)
	}
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return ten, fmt.Errorf("%w: %v", remotewrite.ErrMalformed, err)
	}
	if n > lim.MaxRequestBytes {
		return ten, fmt.Errorf("%w: decoded size of %d bytes, more than the limit of %d", errTooLarge, n, lim.MaxRequestBytes)
	}
	// Decoding to the storage's Prepare is CPU work: more requests at it
	// than CPUs would only hold more decoded buffers at once.
	if err := h.takeInput(r.Context(), st); err != nil {
		return ten, err
	}
	defer h.releaseInput(st) // at the latest; a panic must not keep the turn
	if cap(st.raw) < n {
		st.raw = make([]byte, n)
	}
	raw, err := snappy.Decode(st.raw[:cap(st.raw)], body)
	if err != nil {
		return ten, fmt.Errorf("%w: %v", remotewrite.ErrMalformed, err)
	}
	h.metrics.size.WithLabelValues("snappy").Observe(float64(len(body)))
	h.metrics.size.WithLabelValues("raw").Observe(float64(len(raw)))
	if err := st.req.Unmarshal(raw); err != nil {
		return ten, err
	}

	if h.opts.Head != nil {
		// The memo's candidates stay readable, even if they are removed
		// meanwhile, until the storage has read the batch's labels
		// (releaseInput).
		st.pin, st.pinned = head.PinSymbols(), true
	}
	received, overwrites := h.process(st, set, tenant, lim)
	h.metrics.received.Add(float64(received))
	if overwrites > 0 {
		h.metrics.overwrites.Add(float64(overwrites))
	}
	defer h.countDiscarded(ten, st)

	// The whole request is charged to the bucket, or none of it is stored;
	// what is then not stored is given back.
	ten.lastSamples.Store(int64(len(st.samples)))
	if ok, wait := ten.bucket.admit(h.opts.Now(), float64(len(st.samples)), lim.IngestionRate, float64(lim.IngestionBurst), true); !ok {
		st.discard(reasonRateLimited, len(st.samples))
		return ten, h.rateLimited(ten, now, wait, len(st.samples))
	}
	stored, total := len(st.samples), len(st.req.Series)
	if len(st.batch.Series) > 0 {
		st.batch.MaxSeries = lim.MaxSeries
		st.batch.ReleaseLabels = st.release
		err := h.storage.Append(r.Context(), &st.batch)
		var limited *head.SeriesLimitError
		switch {
		case errors.As(err, &limited):
			ten.bucket.refund(float64(limited.Samples), float64(lim.IngestionBurst))
			stored -= limited.Samples
			st.discard(reasonSeriesLimit, limited.Samples)
			ten.seriesLimited.Add(int64(limited.Samples))
			ten.lastSeries.Store(h.opts.Now().UnixNano())
			h.metrics.accepted.Add(float64(stored))
			// Those series may fit later (series expire): retry after a
			// retention-scale pause, not at once.
			return ten, &retryAfter{err: fmt.Errorf("%w (the other series of the request were stored)", err), after: time.Minute}
		case err != nil:
			ten.bucket.refund(float64(stored), float64(lim.IngestionBurst))
			se := &storeError{cause: err}
			if h.opts.NotReady != nil && errors.Is(err, h.opts.NotReady) {
				se.notReady = h.opts.NotReady
			}
			return ten, se
		}
	}
	h.metrics.accepted.Add(float64(stored))
	if st.rejectedSeries > 0 {
		return ten, fmt.Errorf("%w: %d of %d series rejected; first: %s",
			errInvalidSeries, st.rejectedSeries, total, st.firstReason)
	}
	return ten, nil
}

// appendSamples adds the samples of s that are not too far in the future
// to the batch under the labels packed at st.packed[mark:] (or those of
// known, if not nil); a series left without samples is taken back out.
func (h *WriteHandler) appendSamples(st *writeState, s *remotewrite.Series, maxT int64, mark int, key uint64, known *head.Series) {
	kept := len(st.samples)
	for _, smp := range s.Samples {
		if smp.Timestamp > maxT {
			continue
		}
		st.samples = append(st.samples, head.Sample{T: smp.Timestamp, V: smp.Value})
	}
	if future := len(s.Samples) - (len(st.samples) - kept); future > 0 {
		st.reject(reasonTooFarInFuture, fmt.Sprintf("%d samples more than 10m in the future", future), future, s.Labels)
		if len(st.samples) == kept {
			st.packed = st.packed[:mark]
			return
		}
	}
	st.ends = append(st.ends, seriesEnd{packed: len(st.packed), samples: len(st.samples), key: key, known: known})
}

// acquire takes one of the tenant's slots, then one of the handler's,
// waiting at most the queue timeout for both. A tenant holds at most three
// quarters of the handler's slots: a sender catching up with up to its
// max_shards requests at once (50 by default, against 64 slots), or a
// tenant whose owner is slow to answer, leaves the other tenants room.
func (h *WriteHandler) acquire(r *http.Request, ten *tenantState) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	if err := h.waitSlot(r, ten.slots, &timer); err != nil {
		if err == errQueueTimeout {
			return fmt.Errorf("%w: the tenant has %d in progress; retry later", errOverloaded, cap(ten.slots))
		}
		return err
	}
	if err := h.waitSlot(r, h.slots, &timer); err != nil {
		<-ten.slots
		if err == errQueueTimeout {
			return fmt.Errorf("%w: %d in progress; retry later", errOverloaded, cap(h.slots))
		}
		return err
	}
	return nil
}

// errQueueTimeout is waitSlot's answer when the queue timeout passed.
var errQueueTimeout = errors.New("queue timeout")

// waitSlot puts a token into slots, waiting until *timer (started on the
// first wait of the request) fires.
func (h *WriteHandler) waitSlot(r *http.Request, slots chan struct{}, timer **time.Timer) error {
	select {
	case slots <- struct{}{}:
		return nil
	default:
	}
	if *timer == nil {
		*timer = time.NewTimer(h.opts.QueueTimeout)
	}
	select {
	case slots <- struct{}{}:
		return nil
	case <-(*timer).C:
		return errQueueTimeout
	case <-r.Context().Done():
		return fmt.Errorf("%w: client gone while queued", errOverloaded)
	}
}

func (h *WriteHandler) rateLimited(ten *tenantState, now time.Time, wait time.Duration, samples int) error {
	ten.rateLimited.Add(1)
	ten.lastRate.Store(now.UnixNano())
	if samples == 0 {
		return &retryAfter{err: fmt.Errorf("%w: the tenant's bucket cannot cover a request like its last one", errRateLimited), after: wait}
	}
	return &retryAfter{err: fmt.Errorf("%w: %d samples exceed what the tenant's bucket holds", errRateLimited, samples), after: wait}
}

func (h *WriteHandler) countDiscarded(ten *tenantState, st *writeState) {
	total := 0
	for reason, n := range st.discarded {
		h.metrics.discarded.WithLabelValues(reason).Add(float64(n))
		total += n
	}
	ten.discarded.Add(int64(total))
}

// lookAhead is how many series process looks up in the memo of known
// series at once: each lookup, and then each candidate's labels, is a
// cache miss, and in loops that only read (Memo.GetMany, then a touch of
// each candidate) the misses of many overlap, where resolving each series
// in between would leave them one after the other. A chunk's candidates
// stay in cache until they are resolved.
const lookAhead = 128

// lookUp sets keys[i] to the memo key of chunk[i] (0: none, as for a
// series without samples or whose label bytes were not back to back) and
// known[i] to the memo's candidate for it, and brings the candidates'
// labels into cache.
func (st *writeState) lookUp(memo *head.Memo, chunk []remotewrite.Series, keys []uint64, known []*head.Series) {
	for i := range chunk {
		keys[i] = 0
		if s := &chunk[i]; len(s.Samples) > 0 && s.LabelBytes != nil {
			keys[i] = memoKey(s.LabelBytes)
		}
	}
	memo.GetMany(keys, known)
	for _, k := range known {
		if k != nil {
			st.sink |= k.Touch()
		}
	}
}

// process turns the decoded request into st.batch: valid series with
// stamped, sorted, packed labels and their acceptable samples. It returns
// the number of samples received and of cluster labels overwritten.
func (h *WriteHandler) process(st *writeState, set *Settings, tenant string, lim *config.Limits) (received, overwrites int) {
	maxT := h.opts.Now().UnixMilli() + maxFuture
	st.batch.Tenant = tenant
	var memo *head.Memo
	knownSeries := 0
	if h.opts.Head != nil && set.Pipelines[tenant] == nil {
		memo = h.opts.Head.Memo(tenant)
	}
	clear(st.keys[:])
	defer clear(st.known[:]) // a pooled state must not keep series alive
	for start := 0; start < len(st.req.Series); start += lookAhead {
		chunk := st.req.Series[start:min(start+lookAhead, len(st.req.Series))]
		keys, cands := st.keys[:len(chunk)], st.known[:len(chunk)]
		if memo != nil {
			st.lookUp(memo, chunk, keys, cands)
		}
		for i := range chunk {
			s := &chunk[i]
			received += len(s.Samples) + s.Histograms
			if s.Histograms > 0 {
				st.discard(reasonNativeHistograms, s.Histograms)
			}
			if len(s.Samples) == 0 {
				continue
			}
			mark := len(st.packed)
			key := keys[i]
			if key != 0 {
				if known, overwritten := set.resolveKnown(cands[i], tenant, lim, s.Labels); known != nil {
					if overwritten {
						overwrites++
					}
					knownSeries++
					// With the key, so that if known is removed before the
					// storage's Prepare, the series it finds instead is
					// remembered.
					h.appendSamples(st, s, maxT, mark, key, known)
					continue
				}
			}
			out := set.resolve(st, tenant, lim, s.Labels)
			if out.overwritten {
				overwrites++
			}
			switch {
			case out.dropped != "":
				st.discard(out.dropped, len(s.Samples))
			case out.reason != "":
				st.reject(out.reason, out.msg, len(s.Samples), s.Labels)
			default:
				if key != 0 && !namesSorted(s.Labels) {
					key = 0 // resolveKnown could never follow this order: no entry
				}
				h.appendSamples(st, s, maxT, mark, key, nil)
			}
		}
	}
	var prev seriesEnd
	for _, e := range st.ends {
		bs := head.BatchSeries{
			Labels:  st.packed[prev.packed:e.packed:e.packed],
			Samples: st.samples[prev.samples:e.samples:e.samples],
			Key:     e.key,
			Known:   e.known,
		}
		if e.known != nil {
			bs.Labels = nil // Known's (head.BatchSeries.PackedLabels)
		}
		st.batch.Series = append(st.batch.Series, bs)
		prev = e
	}
	if knownSeries > 0 {
		h.metrics.known.Add(float64(knownSeries))
	}
	return received, overwrites
}

// outcome is what became of one series' labels.
type outcome struct {
	dropped     string // dropped by the allowlist or a rule (not an error)
	reason, msg string // refused: invalid (400)
	overwritten bool   // the client sent another cluster label
}

// resolve takes a series' labels as the client sent them through the whole
// label path: the client's cluster label out, the tenant's pipeline
// (allowlist, relabel_configs, anonymization; remembered in its memo), the
// cluster label stamped, sorted, validated, and appended to st.packed in
// head.Labels form. On any other outcome st.packed is as it was.
func (set *Settings) resolve(st *writeState, tenant string, lim *config.Limits, in []remotewrite.Label) (out outcome) {
	// The client's cluster label is gone before any rule sees it. Room is
	// kept for the stamp, which comes last.
	ls := slices.Grow(st.scratch[:0], len(in)+1)
	st.scratch = ls
	for _, l := range in {
		switch {
		case l.Name == set.ClusterLabel:
			out.overwritten = out.overwritten || l.Value != tenant
		case l.Value != "" || l.Name == "": // an empty value is an absent label
			ls = append(ls, l)
		}
	}
	// Counted before sorting: sorting is quadratic for a hostile order.
	if len(ls)+1 > lim.MaxLabelsPerSeries {
		out.reason, out.msg = reasonTooManyLabels, fmt.Sprintf("%d labels, more than the limit of %d", len(ls)+1, lim.MaxLabelsPerSeries)
		return out
	}
	pipe := set.Pipelines[tenant]
	var memo *relabel.Memo
	var memoKey []byte
	if pipe != nil {
		sortLabels(ls) // a canonical input for the pipeline's memo
		// The pipeline keeps one value of a name given twice: refused
		// here, as packValid refuses it where there is no pipeline.
		for i := 1; i < len(ls); i++ {
			if ls[i].Name == ls[i-1].Name {
				out.reason, out.msg = reasonDuplicateLabel, "duplicate label name "+quoteName(ls[i].Name)
				return out
			}
		}
		if memo = pipe.Memo(); memo != nil {
			memoKey = pipe.Key(ls, &st.relabel)
			if e, ok := memo.Lookup(memoKey); ok {
				if e.Dropped == "" {
					st.packed = append(st.packed, e.Packed...)
				}
				out.dropped = e.Dropped
				return out
			}
		}
		if ls, out.dropped = pipe.Apply(ls, &st.relabel); out.dropped != "" {
			if memo != nil {
				memo.Store(memoKey, nil, out.dropped)
			}
			return out
		}
		if len(ls)+1 > lim.MaxLabelsPerSeries {
			out.reason, out.msg = reasonTooManyLabels, fmt.Sprintf("%d labels after relabeling, more than the limit of %d", len(ls)+1, lim.MaxLabelsPerSeries)
			return out
		}
	}
	ls, _ = relabel.StampCluster(ls, set.ClusterLabel, tenant) // last: nothing can forge it
	sortLabels(ls)
	mark := len(st.packed)
	if st.packed, out.reason, out.msg = packValid(st.packed, ls, lim); out.reason != "" {
		return out
	}
	if memo != nil {
		memo.Store(memoKey, st.packed[mark:], "")
	}
	return out
}

// CheckSeries shows what the write path makes of one series pushed by
// tenant: its stored labels, or why it is dropped or refused. It is for
// `fedgate check-config`, and runs the very code a push does.
func (set *Settings) CheckSeries(tenant string, ls []remotewrite.Label) (stored head.Labels, dropped string, refused error) {
	lim := set.limits(tenant)
	st := &writeState{input: new(input)}
	switch out := set.resolve(st, tenant, lim, ls); {
	case out.dropped != "":
		return "", out.dropped, nil
	case out.reason != "":
		return "", "", fmt.Errorf("%w: %s (%s)", errInvalidSeries, out.msg, out.reason)
	}
	return head.Labels(st.packed), "", nil
}

// checkMediaType accepts what Prometheus and vmagent send for remote-write
// 1.0: Content-Type application/x-protobuf (absent is taken as that, as
// Prometheus does), optionally with proto=prometheus.WriteRequest, and
// Content-Encoding snappy (absent likewise). Remote-write 2.0 is refused
// with 415; Prometheus 3.5 then drops the batch (it neither retries nor
// falls back), so its senders must use remote-write 1.0.
func checkMediaType(hdr http.Header) error {
	if ct := hdr.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/x-protobuf" {
			return fmt.Errorf("%w: Content-Type %q, want application/x-protobuf", errUnsupportedMedia, ct)
		}
		if p, ok := params["proto"]; ok && p != "prometheus.WriteRequest" {
			return fmt.Errorf("%w: proto %q, only prometheus.WriteRequest (remote-write 1.0) is accepted", errUnsupportedMedia, p)
		}
	}
	if ce := hdr.Get("Content-Encoding"); ce != "" && ce != "snappy" {
		return fmt.Errorf("%w: Content-Encoding %q, want snappy", errUnsupportedMedia, ce)
	}
	return nil
}
