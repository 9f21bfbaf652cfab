package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/ring"
	"github.com/fedgate/fedgate/wal"
	"github.com/fedgate/fedgate/wal/head"
)

// staticRing builds the ring of ring.members, or a ring of this instance
// alone when none are listed. An instance not among the members drains.
func staticRing(cfg *config.File, internalAddr string, logger *slog.Logger) (*ring.Ring, error) {
	if len(cfg.Ring.Members) == 0 {
		self := cmp.Or(cfg.Ring.Self, "self")
		return ring.New([]ring.Member{{Name: self, URL: "http://" + internalAddr}}, self)
	}
	members := make([]ring.Member, 0, len(cfg.Ring.Members))
	for _, m := range cfg.Ring.Members {
		members = append(members, ring.Member{Name: m.Name, URL: m.URL})
	}
	r, err := ring.New(members, cfg.Ring.Self)
	if errors.Is(err, ring.ErrSelfMissing) {
		if len(cfg.Ring.Secret) == 0 {
			// Its forwards and handoffs would be refused (401, or 404 by a
			// ring of one without a secret) and answered 503 for ever.
			return nil, fmt.Errorf("%q is not among ring.members, so it drains into them: ring.secret_file is required, on them too", cfg.Ring.Self)
		}
		logger.Warn("this instance is not among ring.members: draining (forwarding every write, handing off everything held)", "self", cfg.Ring.Self)
		return ring.NewDraining(members, cfg.Ring.Self)
	}
	return r, err
}

// checkRing refuses a ring section that config validation passes but
// startup would not: a DNS name discovery cannot use, or a ring.self that
// names several members. check-config and reload run it, so that neither
// reports success for a file the next start refuses. A self given only by
// --ring.self is checked at start.
func checkRing(cfg *config.File) error {
	r := cfg.Ring
	switch {
	case r.DNS != "":
		_, err := ring.NewDNSDiscovery(ring.DNSOptions{Addr: r.DNS, Self: cmp.Or(r.Self, "self"), Refresh: time.Duration(r.RefreshInterval),
			Scheme: r.Scheme, RemoveAfter: time.Duration(r.RemoveAfter)}, nil, nil, nil)
		if err != nil {
			return fmt.Errorf("ring: %w", err)
		}
	case len(r.Members) > 0 && r.Self != "":
		if _, err := staticRing(cfg, "", slog.New(slog.DiscardHandler)); err != nil {
			return fmt.Errorf("ring: %w", err)
		}
	}
	return nil
}

// firstDNSRing waits for a DNS answer that includes this instance: without
// one, this instance cannot know which tenants it owns.
func firstDNSRing(ctx context.Context, disc *ring.DNSDiscovery, logger *slog.Logger) (*ring.Ring, error) {
	for {
		r, _, err := disc.Refresh(ctx)
		if err == nil && r != nil {
			return r, nil
		}
		logger.Warn("waiting for a DNS answer that includes this instance", "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no usable DNS answer before shutdown: %w", err)
		case <-time.After(2 * time.Second):
		}
	}
}

// handoffLoop hands moved tenants to their new owners: when kicked (after
// replay, on a ring change), every minute, and after a failure sooner:
// 1s, doubling up to a minute (the other instance may not have switched to
// the new ring yet).
func handoffLoop(ctx context.Context, router *ring.Router, hd *head.Head, store *wal.Storage, rl *reloader, kick <-chan struct{}, logger *slog.Logger) {
	const idle = time.Minute
	wait := idle
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-timer.C:
		}
		limits := func(tenant string) int {
			for _, t := range rl.current().Tenants {
				if t.ID == tenant {
					return t.Limits.MaxSeries
				}
			}
			return rl.current().Limits.MaxSeries
		}
		moved, err := router.Handoff(ctx, hd, store, limits)
		if moved > 0 {
			logger.Info("handed moved tenants' series to their new owners", "series", moved)
		}
		switch {
		case err == nil:
			wait = idle
		case wait >= idle: // the first failure after a success
			wait = time.Second
		default:
			wait = min(2*wait, idle)
		}
		if err != nil {
			logger.Warn("handoff incomplete; the rest stays here, hidden from /federate, and is retried", "err", err, "retry_in", wait)
		}
		timer.Reset(wait)
	}
}
