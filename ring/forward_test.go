package ring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fedgate/fedgate/wal/head"
)

func testBatch(tenant string, series int) *head.Batch {
	b := &head.Batch{Tenant: tenant, MaxSeries: 1000}
	for i := range series {
		var l []byte
		l = head.AppendLabel(l, "__name__", "up")
		l = head.AppendLabel(l, "cluster_id", tenant)
		l = head.AppendLabel(l, "i", fmt.Sprint(i))
		b.Series = append(b.Series, head.BatchSeries{Labels: l, Samples: []head.Sample{{T: 1_700_000_000_000 + int64(i), V: float64(i)}, {T: -5, V: math.Inf(-1)}}})
	}
	return b
}

func TestBatchRoundTrip(t *testing.T) {
	in := testBatch("cluster-a", 50)
	in.Series = append(in.Series, head.BatchSeries{Labels: in.Series[0].Labels}) // no samples
	raw := AppendBatch(nil, in)
	var d BatchDecoder
	out, err := d.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if out.Tenant != in.Tenant || out.MaxSeries != in.MaxSeries || len(out.Series) != len(in.Series) {
		t.Fatalf("got tenant %q max %d series %d", out.Tenant, out.MaxSeries, len(out.Series))
	}
	for i := range in.Series {
		if string(out.Series[i].Labels) != string(in.Series[i].Labels) || len(out.Series[i].Samples) != len(in.Series[i].Samples) ||
			len(in.Series[i].Samples) > 0 && !reflect.DeepEqual(out.Series[i].Samples, in.Series[i].Samples) {
			t.Fatalf("series %d differs", i)
		}
	}
	// Every truncation and a damaged magic are errors, never panics.
	for n := range len(raw) {
		if _, err := d.Decode(raw[:n]); !errors.Is(err, ErrBadBatch) {
			t.Fatalf("truncated at %d: %v", n, err)
		}
	}
	bad := append([]byte(nil), raw...)
	bad[0] = 'X'
	if _, err := d.Decode(bad); !errors.Is(err, ErrBadBatch) {
		t.Fatal("bad magic accepted")
	}
}

// TestBatchRoundTripOfKnownSeries: a batch series that carries only its
// held series (the gateway's known series, Labels nil) goes out with that
// series' labels.
func TestBatchRoundTripOfKnownSeries(t *testing.T) {
	hd := head.New(head.Options{Retention: time.Hour, Now: func() time.Time { return time.UnixMilli(1_700_000_000_000) }}, nil)
	in := testBatch("cluster-a", 3)
	ss, err := hd.Prepare(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := in.Series[1].Labels
	in.Series[1].Labels, in.Series[1].Known = nil, ss[1]
	var d BatchDecoder
	out, err := d.Decode(AppendBatch(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Series[1].Labels) != string(want) {
		t.Fatalf("known series forwarded as %s, want %s", head.Labels(out.Series[1].Labels), head.Labels(want))
	}
}

// TestBatchWantsTheShortestForm: a peer's labels with an overlong length
// are refused (their bytes would hash apart from the same labels packed
// by the gateway, and make a second series).
func TestBatchWantsTheShortestForm(t *testing.T) {
	in := &head.Batch{Tenant: "a", Series: []head.BatchSeries{{Labels: []byte{0x81, 0x00, 'a', 0x01, 'b'}, Samples: []head.Sample{{T: 1, V: 1}}}}}
	var d BatchDecoder
	if _, err := d.Decode(AppendBatch(nil, in)); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("overlong length accepted: %v", err)
	}
}

// instance is one gateway of a test ring: its head, its peer endpoint and
// its router.
type instance struct {
	head   *head.Head
	srv    *httptest.Server
	router *Router
	cur    *Current
}

func newInstances(t *testing.T, n int, secret string) []*instance {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	insts := make([]*instance, n)
	members := make([]Member, n)
	for i := range insts {
		in := &instance{head: head.New(head.Options{Retention: time.Hour, Now: func() time.Time { return time.UnixMilli(1_700_000_000_000) }}, nil)}
		in.cur = &Current{}
		in.srv = httptest.NewServer(NewPeerHandler(in.cur, in.head, []byte(secret), 1<<20, logger, prometheus.NewRegistry()))
		t.Cleanup(in.srv.Close)
		members[i] = Member{Name: fmt.Sprintf("gw-%d", i), URL: in.srv.URL}
		insts[i] = in
	}
	for i, in := range insts {
		r, err := New(members, members[i].Name)
		if err != nil {
			t.Fatal(err)
		}
		in.cur.Store(r)
		in.router = NewRouter(in.cur, in.head, RouterOptions{Secret: []byte(secret), Timeout: 5 * time.Second}, logger, prometheus.NewRegistry())
	}
	return insts
}

func TestRouterStoresEachTenantOnItsOwner(t *testing.T) {
	insts := newInstances(t, 3, "peer-secret")
	ctx := context.Background()
	for k := range 30 {
		tenant := fmt.Sprintf("cluster-%d", k)
		// Pushed to an instance chosen regardless of ownership.
		if err := insts[k%3].router.Append(ctx, testBatch(tenant, 4)); err != nil {
			t.Fatalf("%s: %v", tenant, err)
		}
		owner, _ := insts[0].cur.Load().Owner(tenant)
		for i, in := range insts {
			got := in.head.TenantSeries(tenant)
			if want := map[bool]int{true: 4, false: 0}[owner.Name == fmt.Sprintf("gw-%d", i)]; got != want {
				t.Fatalf("%s: gw-%d holds %d series, want %d (owner %s)", tenant, i, got, want, owner.Name)
			}
		}
	}
}

func TestForwardFailures(t *testing.T) {
	insts := newInstances(t, 2, "peer-secret")
	ctx := context.Background()
	// A tenant owned by gw-1, pushed to gw-0.
	var tenant string
	for k := 0; ; k++ {
		tenant = fmt.Sprintf("t-%d", k)
		if o, _ := insts[0].cur.Load().Owner(tenant); o.Name == "gw-1" {
			break
		}
	}

	// The owner enforces the tenant's series limit; the sender learns it.
	b := testBatch(tenant, 5)
	b.MaxSeries = 3
	var le *head.SeriesLimitError
	if err := insts[0].router.Append(ctx, b); !errors.As(err, &le) || le.Series != 2 || le.Samples != 4 || le.Limit != 3 {
		t.Fatalf("series limit through a forward: %v", err)
	}

	// A wrong secret is refused.
	wrong := NewRouter(insts[0].cur, insts[0].head, RouterOptions{Secret: []byte("guess")}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err := wrong.Append(ctx, testBatch(tenant, 1)); !errors.Is(err, ErrOwnerUnavailable) {
		t.Fatalf("wrong secret: %v", err)
	}

	// An owner that thinks it is not the owner refuses (rings disagree):
	// gw-1's ring puts another member in the tenant's bucket.
	members := []Member{{Name: "gw-1", URL: insts[1].srv.URL}, {Name: "gw-1", URL: insts[1].srv.URL}}
	members[Jump(xxhash.Sum64String(tenant), 2)] = Member{Name: "other", URL: "http://127.0.0.1:1"}
	r, err := New(members, "gw-1")
	if err != nil {
		t.Fatal(err)
	}
	saved := insts[1].cur.Store(r)
	if err := insts[0].router.Append(ctx, testBatch(tenant, 1)); !errors.Is(err, ErrOwnerUnavailable) || insts[1].head.TenantSeries(tenant) != 3 {
		t.Fatalf("owner disagreeing: %v", err)
	}
	insts[1].cur.Store(saved)

	// An owner that is down: 503 for the sender, nothing stored anywhere.
	insts[1].srv.Close()
	before := insts[0].head.NumSeries()
	if err := insts[0].router.Append(ctx, testBatch(tenant, 1)); !errors.Is(err, ErrOwnerUnavailable) {
		t.Fatalf("owner down: %v", err)
	}
	if insts[0].head.NumSeries() != before {
		t.Fatal("a batch for an unreachable owner was kept by the sender")
	}
}

// joining returns two instances with gw-0 alone in its ring, as before
// gw-1 joins, holding tenants cluster-0, cluster-1, ... with series
// series each, and the ring of both, which the test stores in gw-0 when
// it has gw-1 join.
func joining(t *testing.T, tenants, series int) ([]*instance, *Ring) {
	t.Helper()
	insts := newInstances(t, 2, "peer-secret")
	solo, err := New([]Member{{Name: "gw-0", URL: insts[0].srv.URL}}, "gw-0")
	if err != nil {
		t.Fatal(err)
	}
	grown := insts[0].cur.Store(solo)
	for k := range tenants {
		if err := insts[0].router.Append(context.Background(), testBatch(fmt.Sprintf("cluster-%d", k), series)); err != nil {
			t.Fatal(err)
		}
	}
	return insts, grown
}

type headDropper struct{ h *head.Head }

func (d headDropper) Drop(ss []*head.Series, ts []int64) (int, error) {
	gone := d.h.AppendUnchanged(nil, ss, ts)
	d.h.Remove(gone)
	return len(gone), nil
}

// pushingDropper commits push to the head before it drops: an Append that
// took this instance for the tenant's owner before the ring changed, and
// committed while the handoff forwarded.
type pushingDropper struct {
	headDropper
	push *head.Batch
}

func (d *pushingDropper) Drop(ss []*head.Series, ts []int64) (int, error) {
	if d.push != nil {
		if err := d.h.Append(context.Background(), d.push); err != nil {
			return 0, err
		}
		d.push = nil
	}
	return d.headDropper.Drop(ss, ts)
}

// TestHandoffGoesOnPastARefusal: an owner that answers, refusing some
// tenants (its ring disagrees about them), is still handed the tenants it
// takes in the same run; only one that does not answer is left for the
// next.
func TestHandoffGoesOnPastARefusal(t *testing.T) {
	insts, grown := joining(t, 40, 3)
	ctx := context.Background()
	insts[0].cur.Store(grown)
	// gw-1 knows of a third member, which takes a third of its tenants.
	ms := grown.MemberList()
	other, err := New([]Member{ms[0], ms[1], {Name: "gw-2", URL: "http://127.0.0.1:1"}}, "gw-1")
	if err != nil {
		t.Fatal(err)
	}
	insts[1].cur.Store(other)
	agree, refused := 0, 0
	for k := range 40 {
		tenant := fmt.Sprintf("cluster-%d", k)
		if o, _ := grown.Owner(tenant); o.Name != "gw-1" {
			continue
		}
		if _, self := other.Owner(tenant); self {
			agree++
		} else {
			refused++
		}
	}
	if agree < 2 || refused < 2 {
		t.Fatalf("%d tenants gw-1 takes, %d it refuses: want a few of each", agree, refused)
	}
	n, err := insts[0].router.Handoff(ctx, insts[0].head, headDropper{insts[0].head}, func(string) int { return 0 })
	if n != 3*agree || !errors.Is(err, ErrOwnerUnavailable) {
		t.Fatalf("moved %d series (%v), want the %d of the %d tenants gw-1 takes", n, err, 3*agree, agree)
	}
}

// TestHandoffKeepsASamplePushedWhileItRan: a sample committed here after
// the handoff read the one it forwarded is not dropped with its series;
// the next handoff forwards it.
func TestHandoffKeepsASamplePushedWhileItRan(t *testing.T) {
	insts, grown := joining(t, 0, 0)
	ctx := context.Background()
	tenant := ""
	for k := 0; tenant == ""; k++ {
		if owner, _ := grown.Owner(fmt.Sprintf("cluster-%d", k)); owner.Name == "gw-1" {
			tenant = fmt.Sprintf("cluster-%d", k)
		}
	}
	if err := insts[0].router.Append(ctx, testBatch(tenant, 3)); err != nil {
		t.Fatal(err)
	}
	insts[0].cur.Store(grown)
	newer := testBatch(tenant, 3)
	newer.Series = newer.Series[1:2]
	newer.Series[0].Samples = []head.Sample{{T: 1_700_000_001_000, V: 42}}

	drop := &pushingDropper{headDropper{insts[0].head}, newer}
	if n, err := insts[0].router.Handoff(ctx, insts[0].head, drop, func(string) int { return 0 }); n != 2 || err != nil {
		t.Fatalf("handoff moved %d (%v), want the 2 series not pushed meanwhile", n, err)
	}
	latest := func(h *head.Head) (n int, t int64, v float64) {
		for _, s := range h.AppendFamily(nil, "up") {
			if it := s.Iter(); it.Get("i") == "1" {
				t, v = s.Latest()
			}
			n++
		}
		return n, t, v
	}
	if n, tm, v := latest(insts[0].head); n != 1 || tm != 1_700_000_001_000 || v != 42 {
		t.Fatalf("gw-0 holds %d series, series 1 at %d = %v; want it alone, with the sample pushed meanwhile", n, tm, v)
	}
	if n, err := insts[0].router.Handoff(ctx, insts[0].head, headDropper{insts[0].head}, func(string) int { return 0 }); n != 1 || err != nil {
		t.Fatalf("second handoff moved %d (%v), want 1", n, err)
	}
	if n, tm, v := latest(insts[1].head); n != 3 || tm != 1_700_000_001_000 || v != 42 {
		t.Fatalf("gw-1 holds %d series, series 1 at %d = %v; want 3, series 1 with the sample pushed meanwhile", n, tm, v)
	}
	if n := insts[0].head.NumSeries(); n != 0 {
		t.Fatalf("gw-0 still holds %d series", n)
	}
}

// TestHandoffOnGrowth: gw-0 holds every tenant; gw-1 joins at the end;
// the tenants that move are handed to gw-1 and leave gw-0, the rest stay.
func TestHandoffOnGrowth(t *testing.T) {
	insts, grown := joining(t, 40, 3)
	ctx := context.Background()
	tenants := make([]string, 40)
	for k := range tenants {
		tenants[k] = fmt.Sprintf("cluster-%d", k)
	}
	insts[0].cur.Store(grown)
	moved, err := insts[0].router.Handoff(ctx, insts[0].head, headDropper{insts[0].head}, func(string) int { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	movedTenants := 0
	for _, tenant := range tenants {
		owner, _ := grown.Owner(tenant)
		on0, on1 := insts[0].head.TenantSeries(tenant), insts[1].head.TenantSeries(tenant)
		switch owner.Name {
		case "gw-1":
			movedTenants++
			if on0 != 0 || on1 != 3 {
				t.Fatalf("%s moved to gw-1: gw-0 holds %d, gw-1 holds %d", tenant, on0, on1)
			}
		default:
			if on0 != 3 || on1 != 0 {
				t.Fatalf("%s stays on gw-0: gw-0 holds %d, gw-1 holds %d", tenant, on0, on1)
			}
		}
	}
	if movedTenants == 0 || moved != 3*movedTenants {
		t.Fatalf("moved %d series for %d tenants", moved, movedTenants)
	}
	// Nothing left to move: a second handoff is a no-op.
	if n, err := insts[0].router.Handoff(ctx, insts[0].head, headDropper{insts[0].head}, func(string) int { return 0 }); n != 0 || err != nil {
		t.Fatalf("second handoff moved %d (%v)", n, err)
	}
}

// TestHandoffKeepsWhatCannotMove: an unreachable new owner leaves the
// tenant's series where they are, and says so.
func TestHandoffKeepsWhatCannotMove(t *testing.T) {
	insts, grown := joining(t, 20, 2)
	ctx := context.Background()
	insts[0].cur.Store(grown)
	insts[1].srv.Close()
	before := insts[0].head.NumSeries()
	if n, err := insts[0].router.Handoff(ctx, insts[0].head, headDropper{insts[0].head}, func(string) int { return 0 }); n != 0 || !errors.Is(err, ErrOwnerUnavailable) {
		t.Fatalf("handoff to a dead owner: moved %d, err %v", n, err)
	}
	if insts[0].head.NumSeries() != before {
		t.Fatal("series that could not be handed off were dropped")
	}
	// One try of the dead owner, not one per tenant (each may wait the
	// forward timeout).
	moving := 0
	for k := range 20 {
		if owner, _ := grown.Owner(fmt.Sprintf("cluster-%d", k)); owner.Name == "gw-1" {
			moving++
		}
	}
	if got := testutil.ToFloat64(insts[0].router.metrics.errors.WithLabelValues("gw-1")); moving < 2 || got != 1 {
		t.Fatalf("%d forwards to the dead owner for %d tenants, want 1", int(got), moving)
	}
}

// TestForwardReleasesLabelsOnceEncoded pins head.Batch.ReleaseLabels on the
// forwarding path: called once, before the peer's answer, and labels
// scribbled over then change nothing the owner stores.
func TestForwardReleasesLabelsOnceEncoded(t *testing.T) {
	insts := newInstances(t, 2, "peer-secret")
	var tenant string
	for k := 0; ; k++ {
		tenant = fmt.Sprintf("t-%d", k)
		if o, _ := insts[0].cur.Load().Owner(tenant); o.Name == "gw-1" {
			break
		}
	}
	b := testBatch(tenant, 5)
	want := make([]string, len(b.Series))
	for i := range b.Series {
		want[i] = string(b.Series[i].Labels)
	}
	calls := 0
	b.ReleaseLabels = func() {
		calls++
		if insts[1].head.TenantSeries(tenant) != 0 {
			t.Error("labels released after the owner stored the batch")
		}
		for i := range b.Series {
			for k := range b.Series[i].Labels {
				b.Series[i].Labels[k] = 'X'
			}
		}
	}
	if err := insts[0].router.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("ReleaseLabels called %d times, want 1", calls)
	}
	var got []string
	for _, s := range insts[1].head.AppendFamily(nil, "up") {
		got = append(got, string(s.Labels()))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the owner holds %q, want %q", got, want)
	}
}

// partCounter is a head that counts the parts a handoff reads.
type partCounter struct {
	*head.Head
	parts int
}

func (c *partCounter) AppendSeriesPart(dst []*head.Series, part int) []*head.Series {
	c.parts++
	return c.Head.AppendSeriesPart(dst, part)
}

// TestHandoffWithNothingToMoveReadsNoSeries: the minutely handoff decides
// per tenant, so with every held tenant owned it reads no series at all
// (it snapshot every series and hashed each one's tenant, a GC-starting
// allocation a minute at a million series); with some moved, it walks
// the head once.
func TestHandoffWithNothingToMoveReadsNoSeries(t *testing.T) {
	insts, grown := joining(t, 40, 3)
	ctx := context.Background()
	src := &partCounter{Head: insts[0].head}
	if n, err := insts[0].router.Handoff(ctx, src, headDropper{insts[0].head}, func(string) int { return 0 }); n != 0 || err != nil || src.parts != 0 {
		t.Fatalf("every tenant owned: moved %d (%v), read %d parts; want 0, nil, 0", n, err, src.parts)
	}
	insts[0].cur.Store(grown)
	if n, err := insts[0].router.Handoff(ctx, src, headDropper{insts[0].head}, func(string) int { return 0 }); n == 0 || err != nil || src.parts != head.SeriesParts {
		t.Fatalf("after growth: moved %d (%v), read %d parts; want some, nil, %d", n, err, src.parts, head.SeriesParts)
	}
}
