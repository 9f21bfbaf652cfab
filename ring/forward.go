package ring

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/gateway/turns"
	"github.com/fedgate/fedgate/wal/codec"
	"github.com/fedgate/fedgate/wal/head"
)

// PeerPath is where an instance takes batches forwarded by its peers, on
// its internal listener only.
const PeerPath = "/internal/v1/append"

// seriesLimitHeader carries a *head.SeriesLimitError from owner to sender:
// "series samples limit".
const seriesLimitHeader = "X-Fedgate-Series-Limited"

// Appender stores a batch locally.
type Appender interface {
	Append(ctx context.Context, b *head.Batch) error
}

// ErrOwnerUnavailable is matched when the owner of a tenant could not take
// a batch: unreachable, timed out, not ready, or not (yet) agreeing that it
// is the owner. The sender answers 503 and its client retries.
var ErrOwnerUnavailable = errors.New("owner unavailable")

// errUnreachable is matched, besides ErrOwnerUnavailable, when the owner
// did not answer at all (refused, reset, timed out): not a refusal of the
// one batch, as an answer would be.
var errUnreachable = errors.New("unreachable")

// RouterOptions configure a Router.
type RouterOptions struct {
	// Secret authenticates this instance to its peers (ring.secret_file).
	Secret []byte
	// Timeout bounds one forward; 0 means 10 seconds.
	Timeout time.Duration
	// TLS configures forwards to https members (ring.tls_config: the CA
	// of their internal listeners, a client certificate for those that
	// require one); nil means Go's defaults.
	TLS *tls.Config
}

// Router stores each batch where its tenant lives: locally when this
// instance owns the tenant, otherwise on the owner, synchronously, so the
// client's answer is the owner's (204 only after the owner's fsync).
// Requests are bounded by the write path's own concurrency limit; nothing
// queues here.
type Router struct {
	cur     *Current
	local   Appender
	client  *http.Client
	auth    string
	timeout time.Duration
	logger  *slog.Logger
	bufs    sync.Pool // of *[]byte
	metrics routerMetrics
}

type routerMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	samples  *prometheus.CounterVec
	handoff  prometheus.Counter
}

// NewRouter routes batches over the ring in cur, storing owned ones in
// local.
func NewRouter(cur *Current, local Appender, opts RouterOptions, logger *slog.Logger, reg prometheus.Registerer) *Router {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	r := &Router{
		cur: cur, local: local, timeout: opts.Timeout, logger: logger,
		auth: "Bearer " + string(opts.Secret),
		client: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			TLSClientConfig:     opts.TLS,
		}},
	}
	r.bufs.New = func() any { return new([]byte) }
	r.metrics = routerMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fedgate_forward_duration_seconds",
			Help:    "Time to forward a batch to its owner and get its answer, by peer.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"peer"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedgate_forward_errors_total",
			Help: "Forwards that failed (transport, timeout, or the owner answering 5xx), by peer.",
		}, []string{"peer"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedgate_forwarded_bytes_total",
			Help: "Compressed bytes of batches forwarded, by peer.",
		}, []string{"peer"}),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedgate_routed_samples_total",
			Help: "Samples routed, by destination: local, or the peer they were forwarded to.",
		}, []string{"destination"}),
	}
	r.metrics.handoff = newHandoffCounter()
	if reg != nil {
		reg.MustRegister(r.metrics.duration, r.metrics.errors, r.metrics.bytes, r.metrics.samples, r.metrics.handoff)
	}
	return r
}

// Append stores b on the owner of its tenant.
func (r *Router) Append(ctx context.Context, b *head.Batch) error {
	owner, self := r.cur.Load().Owner(b.Tenant)
	if self {
		r.metrics.samples.WithLabelValues("local").Add(float64(countSamples(b)))
		return r.local.Append(ctx, b)
	}
	return r.Forward(ctx, owner, b)
}

func countSamples(b *head.Batch) int {
	n := 0
	for i := range b.Series {
		n += len(b.Series[i].Samples)
	}
	return n
}

// Forward sends b to member m and returns its verdict: nil once m has it
// on disk, a *head.SeriesLimitError, or an error matching
// ErrOwnerUnavailable.
func (r *Router) Forward(ctx context.Context, m Member, b *head.Batch) error {
	start := time.Now()
	bp := r.bufs.Get().(*[]byte)
	raw := AppendBatch((*bp)[:0], b)
	b.LabelsRead()
	body := snappy.Encode(nil, raw)
	*bp = raw
	r.bufs.Put(bp)

	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(m.URL, "/")+PeerPath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrOwnerUnavailable, m.Name, err)
	}
	req.Header.Set("Content-Type", BatchContentType)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Authorization", r.auth)
	resp, err := r.client.Do(req)
	r.metrics.duration.WithLabelValues(m.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		r.metrics.errors.WithLabelValues(m.Name).Inc()
		return fmt.Errorf("%w: %w: forward to %s: %v", ErrOwnerUnavailable, errUnreachable, m.Name, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	r.metrics.bytes.WithLabelValues(m.Name).Add(float64(len(body)))
	switch {
	case resp.StatusCode == http.StatusNoContent:
		r.metrics.samples.WithLabelValues(m.Name).Add(float64(countSamples(b)))
		return nil
	case resp.StatusCode == http.StatusTooManyRequests:
		if e := parseSeriesLimit(resp.Header.Get(seriesLimitHeader)); e != nil {
			r.metrics.samples.WithLabelValues(m.Name).Add(float64(countSamples(b) - e.Samples))
			return e
		}
	}
	r.metrics.errors.WithLabelValues(m.Name).Inc()
	return fmt.Errorf("%w: %s answered %d: %s", ErrOwnerUnavailable, m.Name, resp.StatusCode, strings.TrimSpace(string(msg)))
}

func parseSeriesLimit(h string) *head.SeriesLimitError {
	f := strings.Fields(h)
	if len(f) != 3 {
		return nil
	}
	var v [3]int
	for i := range f {
		n, err := strconv.Atoi(f[i])
		if err != nil {
			return nil
		}
		v[i] = n
	}
	return &head.SeriesLimitError{Series: v[0], Samples: v[1], Limit: v[2]}
}

// PeerHandler serves PeerPath: batches forwarded by peers, stored in local
// only if this instance owns their tenant (it never forwards again, so two
// instances that disagree about the ring cannot bounce a batch between
// them).
type PeerHandler struct {
	cur     *Current
	local   Appender
	digest  [sha256.Size]byte
	maxBody int
	logger  *slog.Logger
	pool    sync.Pool // of *peerState
	refused *prometheus.CounterVec
	// decoding holds a turn per batch being decoded: from its snappy
	// decode until the storage has read its labels
	// (head.Batch.ReleaseLabels). As on the write path, more batches at it
	// than CPUs would only hold more decoded buffers at once, and forwarded
	// batches come from every peer. Shared with the write path when
	// ShareTurns says so. The decoded batch is given back with the turn
	// (raws), so that batches waiting for their fsync hold only their
	// body and samples, as pushes do.
	decoding *turns.Turns
	raws     sync.Pool // of *[]byte
}

// maxPooledRaw is the largest decoded batch buffer kept for reuse; a rare
// larger one is left to the GC.
const maxPooledRaw = 48 << 20

type peerState struct {
	body    []byte
	raw     *[]byte // the decoded batch, from PeerHandler.raws, while the turn is held
	dec     BatchDecoder
	h       *PeerHandler
	turns   *turns.Turns // the turn held, if any
	release func()       // st.releaseTurn, made once per state
}

// releaseTurn gives the state's decoding turn and decoded batch back,
// once: nothing of the batch but its samples and tenant may be read after
// it.
func (st *peerState) releaseTurn() {
	if st.turns != nil {
		st.turns.Release()
		st.turns = nil
	}
	if st.raw != nil {
		// The batch's labels point into the buffer: drop them, so that a
		// buffer too big to pool is not kept alive through the fsync.
		for i := range st.dec.batch.Series {
			st.dec.batch.Series[i].Labels = nil
		}
		if cap(*st.raw) <= maxPooledRaw {
			st.h.raws.Put(st.raw)
		}
		st.raw = nil
	}
}

// putState pools st, unless a rare huge batch left it holding more than
// maxPooledRaw.
func (h *PeerHandler) putState(st *peerState) {
	if cap(st.body)+st.dec.footprint() > maxPooledRaw {
		return
	}
	h.pool.Put(st)
}

// ShareTurns makes the handler decode in the turns t, shared with the
// write path (gateway.WriteOptions.Decoding), so that pushes and forwarded
// batches together decode no more than one per CPU at once. No turn is
// ever held while waiting for a peer (the write path gives its turn back
// before it forwards), so sharing cannot deadlock two instances. Call it
// before serving.
func (h *PeerHandler) ShareTurns(t *turns.Turns) {
	if t == nil {
		panic("ring: ShareTurns(nil)")
	}
	h.decoding = t
}

// NewPeerHandler takes batches for the tenants this instance owns, from
// peers presenting secret.
func NewPeerHandler(cur *Current, local Appender, secret []byte, maxBody int, logger *slog.Logger, reg prometheus.Registerer) *PeerHandler {
	h := &PeerHandler{cur: cur, local: local, digest: sha256.Sum256(secret), maxBody: maxBody, logger: logger, decoding: new(turns.Turns)}
	h.pool.New = func() any {
		st := &peerState{h: h}
		st.release = st.releaseTurn
		return st
	}
	h.raws.New = func() any { return new([]byte) }
	h.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fedgate_peer_batches_refused_total",
		Help: "Batches from peers refused, by reason: unauthorized, malformed, not_owner.",
	}, []string{"reason"})
	if reg != nil {
		reg.MustRegister(h.refused)
	}
	return h
}

func (h *PeerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	d := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(d[:], h.digest[:]) != 1 {
		h.refused.WithLabelValues("unauthorized").Inc()
		http.Error(w, "unauthorized peer", http.StatusUnauthorized)
		return
	}
	st := h.pool.Get().(*peerState)
	defer h.putState(st)
	var err error
	st.body, err = codec.ReadLimited(st.body[:0], http.MaxBytesReader(w, r.Body, int64(h.maxBody)), r.ContentLength, h.maxBody)
	if err != nil {
		h.refused.WithLabelValues("malformed").Inc()
		http.Error(w, "read batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	n, err := snappy.DecodedLen(st.body)
	if err == nil && n > 4*h.maxBody {
		err = errors.New("decoded batch too large")
	}
	if err == nil {
		if err := h.decoding.Acquire(r.Context()); err != nil {
			http.Error(w, "peer gone while queued", http.StatusServiceUnavailable)
			return
		}
		st.turns = h.decoding // released into the Turns it came from
		st.raw = h.raws.Get().(*[]byte)
		defer st.releaseTurn() // at the latest
		if cap(*st.raw) < n {
			*st.raw = make([]byte, n)
		}
		var raw []byte
		if raw, err = snappy.Decode((*st.raw)[:cap(*st.raw)], st.body); err == nil {
			*st.raw = raw // on an error, keep the buffer for the next batch
		}
	}
	var b *head.Batch
	if err == nil {
		b, err = st.dec.Decode(*st.raw)
	}
	if err != nil {
		h.refused.WithLabelValues("malformed").Inc()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, self := h.cur.Load().Owner(b.Tenant); !self {
		// The rings disagree for the moment (a membership change under
		// way): the sender answers 503 and its client retries.
		h.refused.WithLabelValues("not_owner").Inc()
		http.Error(w, "not the owner of tenant "+strconv.Quote(b.Tenant), http.StatusServiceUnavailable)
		return
	}
	// The tenant points into the decoded batch, which goes back with the
	// labels; the storage reads it after that.
	b.Tenant = strings.Clone(b.Tenant)
	b.ReleaseLabels = st.release
	err = h.local.Append(r.Context(), b)
	var limited *head.SeriesLimitError
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.As(err, &limited):
		w.Header().Set(seriesLimitHeader, fmt.Sprintf("%d %d %d", limited.Series, limited.Samples, limited.Limit))
		http.Error(w, err.Error(), http.StatusTooManyRequests)
	default:
		h.logger.Warn("storing a forwarded batch failed", "tenant", b.Tenant, "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	}
}
