package ring

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Resolver looks up the records DNS discovery reads. *net.Resolver
// satisfies it.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// DNSOptions configure a DNSDiscovery.
type DNSOptions struct {
	// Addr is what to look up: "host:port" for the A and AAAA records of
	// host, each address becoming member "ip:port"; or
	// "_service._proto.name" for SRV records, each target becoming a
	// member named after the target (without the trailing dot).
	Addr string
	// Self names this instance; see New for how it matches a member. An
	// answer without it is refused.
	Self string
	// Refresh is the time between lookups, and bounds each one; 0 means
	// 30 seconds.
	Refresh time.Duration
	// Scheme of the member URLs: "http" (the default) or "https".
	Scheme string
	// RemoveAfter is how long a member of the ring in force stays in it
	// while the answers lack it. 0 removes it from the first answer that
	// lacks it. See DNSDiscovery for why a Kubernetes deployment wants a
	// minute or so.
	RemoveAfter time.Duration
}

// ErrEmptyAnswer is returned when a lookup finds no members (including a
// name that does not exist).
var ErrEmptyAnswer = errors.New("no members in the answer")

// Reasons for refusing an answer, the values of the reason label of
// fedgate_ring_discovery_errors_total.
const (
	reasonError       = "error"
	reasonEmpty       = "empty"
	reasonSelfMissing = "self_missing"
)

// DNSDiscovery builds the ring from DNS.
//
// Members are sorted by name in natural order: digit runs compare as
// numbers, everything else byte by byte, so fedgate-2 comes before
// fedgate-10. The jump hash depends on the order of its buckets, and growing
// by one member moves keys only to the new member if that member is the last
// bucket. A StatefulSet adds and removes the pod with the highest ordinal;
// with natural order that pod is the last bucket, so scaling from n to n±1
// moves only about 1/n of the tenants. Plain lexicographic order would put
// fedgate-10 between fedgate-1 and fedgate-2 and shift the bucket of every
// member after it, moving most tenants at the step from 10 to 11 members.
// Addresses (A records) sort the same way, octet by octet, but a pod's
// address changes when it is recreated, so A records suit instances with
// stable addresses; on Kubernetes, use SRV records of a headless service,
// whose targets are the stable pod names.
//
// A lookup that fails, finds nothing, or finds a list without this instance
// keeps the ring in force: an instance never computes ownership from a ring
// it is not in, and a DNS outage must not reshuffle the tenants. Each refusal
// is counted in fedgate_ring_discovery_errors_total{reason}.
//
// A member missing from an answer mid-list shifts the bucket of every member
// after it. That is what a pod being recreated looks like: between the old
// pod's exit and the new pod's address there are a few seconds without its
// record. RemoveAfter keeps such a member in the ring (its tenants' writes
// fail and are retried meanwhile) instead of moving most tenants twice.
//
// Refresh and Run may be called from several goroutines; lookups are
// serialized.
type DNSDiscovery struct {
	opts       DNSOptions
	resolver   Resolver
	srv        bool
	host, port string // for A and AAAA records
	logger     *slog.Logger
	errors     *prometheus.CounterVec
	duration   prometheus.Histogram
	now        func() time.Time

	mu      sync.Mutex
	last    *Ring                // the last good ring, nil before the first
	missing map[string]time.Time // members of last lacking from the answers, since when
}

// NewDNSDiscovery checks opts and registers the discovery metrics on reg
// (none when reg is nil). A nil resolver means net.DefaultResolver.
func NewDNSDiscovery(opts DNSOptions, resolver Resolver, logger *slog.Logger, reg prometheus.Registerer) (*DNSDiscovery, error) {
	if opts.Self == "" {
		return nil, errors.New("self is required with DNS discovery")
	}
	switch {
	case opts.Refresh == 0:
		opts.Refresh = 30 * time.Second
	case opts.Refresh < 0:
		return nil, fmt.Errorf("refresh interval %s is negative", opts.Refresh)
	}
	if opts.RemoveAfter < 0 {
		return nil, fmt.Errorf("remove_after %s is negative", opts.RemoveAfter)
	}
	switch opts.Scheme {
	case "":
		opts.Scheme = "http"
	case "http", "https":
	default:
		return nil, fmt.Errorf("scheme %q: want http or https", opts.Scheme)
	}
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &DNSDiscovery{
		opts: opts, resolver: resolver, logger: logger, now: time.Now,
		missing: make(map[string]time.Time),
	}
	if err := d.parseAddr(); err != nil {
		return nil, err
	}
	d.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fedgate_ring_discovery_errors_total",
		Help: "DNS answers refused, keeping the ring in force, by reason: error (the lookup failed or its answer is unusable), empty (no members), self_missing (this instance is not among them).",
	}, []string{"reason"})
	for _, r := range []string{reasonError, reasonEmpty, reasonSelfMissing} {
		d.errors.WithLabelValues(r)
	}
	d.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "fedgate_ring_discovery_duration_seconds",
		Help:    "Time of one DNS lookup of the ring members, failed ones included.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{d.errors, d.duration} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register discovery metrics: %w", err)
			}
		}
	}
	return d, nil
}

func (d *DNSDiscovery) parseAddr() error {
	addr := d.opts.Addr
	if strings.HasPrefix(addr, "_") {
		if !strings.Contains(addr, "._") || strings.Contains(addr, ":") {
			return fmt.Errorf("dns %q: an SRV name is _service._proto.name, without a port", addr)
		}
		d.srv = true
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("dns %q: want host:port (A/AAAA records) or _service._proto.name (SRV records)", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("dns %q: invalid port %q", addr, port)
	}
	d.host, d.port = host, port
	return nil
}

// Refresh looks the members up once and returns the ring they make and
// whether it differs from the last good one. When the answer is refused it
// returns the last good ring (nil before the first), false, and an error
// saying why; ErrEmptyAnswer and ErrSelfMissing can be matched.
func (d *DNSDiscovery) Refresh(ctx context.Context) (*Ring, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()

	lctx, cancel := context.WithTimeout(ctx, d.opts.Refresh)
	start := time.Now()
	members, err := d.lookup(lctx)
	d.duration.Observe(time.Since(start).Seconds())
	cancel()
	if err != nil {
		if ctx.Err() != nil { // shutting down, not a failed lookup
			return d.last, false, ctx.Err()
		}
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return d.refuse(reasonEmpty, fmt.Errorf("look up %s: %w: %w", d.opts.Addr, ErrEmptyAnswer, err))
		}
		return d.refuse(reasonError, fmt.Errorf("look up %s: %w", d.opts.Addr, err))
	}
	if len(members) == 0 {
		return d.refuse(reasonEmpty, fmt.Errorf("look up %s: %w", d.opts.Addr, ErrEmptyAnswer))
	}
	if members, err = sortMembers(members); err != nil {
		return d.refuse(reasonError, fmt.Errorf("look up %s: %w", d.opts.Addr, err))
	}
	if _, err := matchSelf(members, d.opts.Self); err != nil {
		reason := reasonError
		if errors.Is(err, ErrSelfMissing) {
			reason = reasonSelfMissing
		}
		return d.refuse(reason, fmt.Errorf("look up %s: %w", d.opts.Addr, err))
	}
	r, err := New(d.holdMissing(members), d.opts.Self)
	if err != nil {
		return d.refuse(reasonError, fmt.Errorf("look up %s: %w", d.opts.Addr, err))
	}
	if r.sameMembers(d.last) {
		return d.last, false, nil
	}
	d.logger.Info("ring members changed", "dns", d.opts.Addr, "members", memberNames(r), "previous", memberNames(d.last))
	d.last = r
	return r, true, nil
}

// refuse counts and logs a refused answer and keeps the last good ring.
func (d *DNSDiscovery) refuse(reason string, err error) (*Ring, bool, error) {
	d.errors.WithLabelValues(reason).Inc()
	d.logger.Warn("ring discovery answer refused; keeping the ring in force", "reason", reason, "members", memberNames(d.last), "err", err)
	return d.last, false, err
}

// lookup returns the members in the answer, unsorted.
func (d *DNSDiscovery) lookup(ctx context.Context) ([]Member, error) {
	if d.srv {
		// Go's resolver returns the valid records beside an error for the
		// invalid ones; a partial answer is refused like a failed one.
		_, records, err := d.resolver.LookupSRV(ctx, "", "", d.opts.Addr)
		if err != nil {
			return nil, err
		}
		members := make([]Member, 0, len(records))
		for _, rec := range records {
			name := strings.TrimSuffix(rec.Target, ".")
			if name == "" { // "." means the service is not available here (RFC 2782)
				continue
			}
			members = append(members, Member{Name: name, URL: d.opts.Scheme + "://" + net.JoinHostPort(name, strconv.Itoa(int(rec.Port)))})
		}
		return members, nil
	}
	addrs, err := d.resolver.LookupHost(ctx, d.host)
	if err != nil {
		return nil, err
	}
	members := make([]Member, 0, len(addrs))
	for _, a := range addrs {
		name := net.JoinHostPort(a, d.port)
		members = append(members, Member{Name: name, URL: d.opts.Scheme + "://" + name})
	}
	return members, nil
}

// holdMissing adds to answer the members of the ring in force that it lacks
// and that have been lacking for less than RemoveAfter.
func (d *DNSDiscovery) holdMissing(answer []Member) []Member {
	if d.last == nil || d.opts.RemoveAfter <= 0 {
		clear(d.missing)
		return answer
	}
	in := make(map[string]struct{}, len(answer))
	for _, m := range answer {
		in[m.Name] = struct{}{}
		delete(d.missing, m.Name) // back, if it was missing
	}
	now, held := d.now(), len(answer)
	for _, m := range d.last.members {
		if _, ok := in[m.Name]; ok {
			continue
		}
		since, ok := d.missing[m.Name]
		if !ok {
			since = now
			d.missing[m.Name] = now
			d.logger.Info("ring member missing from the DNS answer; kept in the ring for now", "member", m.Name, "remove_after", d.opts.RemoveAfter)
		}
		if now.Sub(since) < d.opts.RemoveAfter {
			answer = append(answer, m)
			continue
		}
		delete(d.missing, m.Name)
	}
	if len(answer) > held {
		slices.SortFunc(answer, compareMembers)
	}
	return answer
}

// Run refreshes the ring now and every Refresh until ctx is done. When the
// member list changes it puts the new ring in force in cur and then calls
// onChange (if not nil) with the ring it replaced and the new one. A
// refused answer changes nothing.
func (d *DNSDiscovery) Run(ctx context.Context, cur *Current, onChange func(old, new *Ring)) {
	t := time.NewTicker(d.opts.Refresh)
	defer t.Stop()
	for ctx.Err() == nil {
		if r, changed, err := d.Refresh(ctx); err == nil && changed {
			old := cur.Store(r)
			if onChange != nil {
				onChange(old, r)
			}
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// sortMembers sorts members by name in natural order and drops exact
// duplicates; one name with two URLs is an error.
func sortMembers(members []Member) ([]Member, error) {
	slices.SortFunc(members, compareMembers)
	members = slices.Compact(members)
	for i := 1; i < len(members); i++ {
		if members[i].Name == members[i-1].Name {
			return nil, fmt.Errorf("member %q has two addresses: %s and %s", members[i].Name, members[i-1].URL, members[i].URL)
		}
	}
	return members, nil
}

func compareMembers(a, b Member) int {
	if c := compareNatural(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(a.URL, b.URL)
}

// compareNatural orders strings as people number things: runs of digits
// compare by their value, other bytes by their value. Strings of equal value
// ("a01", "a1") fall back to byte order, so the order is total.
func compareNatural(a, b string) int {
	x, y := a, b
	for x != "" && y != "" {
		if isDigit(x[0]) && isDigit(y[0]) {
			nx, ny := digits(x), digits(y)
			vx, vy := strings.TrimLeft(x[:nx], "0"), strings.TrimLeft(y[:ny], "0")
			if c := cmp.Compare(len(vx), len(vy)); c != 0 {
				return c
			}
			if c := strings.Compare(vx, vy); c != 0 {
				return c
			}
			x, y = x[nx:], y[ny:]
			continue
		}
		if c := cmp.Compare(x[0], y[0]); c != 0 {
			return c
		}
		x, y = x[1:], y[1:]
	}
	if c := cmp.Compare(len(x), len(y)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits returns the length of the run of digits s starts with.
func digits(s string) int {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	return n
}

func memberNames(r *Ring) []string {
	if r == nil {
		return nil
	}
	names := make([]string, len(r.members))
	for i, m := range r.members {
		names[i] = m.Name
	}
	return names
}

var _ Resolver = (*net.Resolver)(nil)
