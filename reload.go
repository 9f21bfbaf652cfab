package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/gateway"
	"github.com/fedgate/fedgate/gateway/config"
)

// reloader re-reads the configuration file on SIGHUP and POST /-/reload and
// applies what can change while running: tenants, tokens and limits. An
// invalid file leaves the running configuration in place.
type reloader struct {
	path     string
	ringSelf string       // --ring.self, which overrides the file's, as at start
	started  *config.File // what storage and ring settings are in force
	running  atomic.Pointer[config.File]
	writes   *gateway.WriteHandler
	logger   *slog.Logger
	mu       sync.Mutex
	success  prometheus.Gauge
	last     prometheus.Gauge
}

func newReloader(path string, started *config.File, writes *gateway.WriteHandler, logger *slog.Logger, reg prometheus.Registerer) *reloader {
	r := &reloader{
		path: path, started: started, writes: writes, logger: logger,
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedgate_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful.",
		}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedgate_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	r.success.Set(1)
	r.last.SetToCurrentTime()
	r.running.Store(started)
	reg.MustRegister(r.success, r.last)
	return r
}

func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.apply()
	if err != nil {
		r.success.Set(0)
		r.logger.Error("config reload failed; the running configuration is kept", "file", r.path, "err", err)
		return err
	}
	r.success.Set(1)
	r.last.SetToCurrentTime()
	r.logger.Info("config reloaded", "file", r.path)
	return nil
}

func (r *reloader) apply() error {
	cfg, err := config.Load(r.path)
	if err != nil {
		return err
	}
	if r.ringSelf != "" {
		cfg.Ring.Self = r.ringSelf
	}
	// Refused though it would not apply now: the next start would fail.
	if err := checkRing(cfg); err != nil {
		return err
	}
	s, err := gateway.NewSettings(cfg)
	if err != nil {
		return err
	}
	r.writes.Apply(s)
	if cfg.Storage != r.started.Storage || !reflect.DeepEqual(cfg.Ring, r.started.Ring) {
		r.logger.Warn("config reload: storage and ring settings (and the peer secret) take effect only at restart")
	}
	// What is in force: those as started.
	cfg.Storage, cfg.Ring = r.started.Storage, r.started.Ring
	r.running.Store(cfg)
	return nil
}

// current returns the configuration in force.
func (r *reloader) current() *config.File { return r.running.Load() }

func (r *reloader) serveHTTP(w http.ResponseWriter, _ *http.Request) {
	start := time.Now()
	if err := r.reload(); err != nil {
		http.Error(w, fmt.Sprintf("reload failed: %v", err), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "config reloaded in %s\n", time.Since(start).Round(time.Millisecond))
}
