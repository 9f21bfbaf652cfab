// Command fedgate is a Prometheus remote-write gateway for push federation.
// See README.md and the package documentation of gateway, wal and ring.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	promcfg "github.com/prometheus/common/config"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/fedgate/fedgate/gateway"
	"github.com/fedgate/fedgate/gateway/config"
	"github.com/fedgate/fedgate/gateway/federate"
	"github.com/fedgate/fedgate/gateway/turns"
	"github.com/fedgate/fedgate/ring"
	"github.com/fedgate/fedgate/wal"
	"github.com/fedgate/fedgate/wal/head"
)

type flags struct {
	configFile      string
	storagePath     string
	listenAddr      string
	internalAddr    string
	webConfigFile   string
	logLevel        string
	logFormat       string
	shutdownTimeout time.Duration

	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int
	maxWrites         int
	writeQueueTimeout time.Duration
	ringSelf          string
}

func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("fedgate", flag.ContinueOnError)
	fs.StringVar(&f.configFile, "config.file", "fedgate.yml", "Configuration file.")
	fs.StringVar(&f.storagePath, "storage.path", "data/", "Directory for the write-ahead log.")
	fs.StringVar(&f.listenAddr, "web.listen-address", ":9095", "Public listener: remote-write, health and readiness.")
	fs.StringVar(&f.internalAddr, "web.internal-listen-address", "127.0.0.1:9096", "Internal listener: /federate, /metrics, /-/reload, status page.")
	fs.StringVar(&f.webConfigFile, "web.config.file", "", "Prometheus web configuration file (TLS, client certificates, basic auth) applied to both listeners.")
	fs.StringVar(&f.logLevel, "log.level", "info", "Log level: debug, info, warn, error.")
	fs.StringVar(&f.logFormat, "log.format", "logfmt", "Log format: logfmt or json.")
	fs.DurationVar(&f.shutdownTimeout, "web.shutdown-timeout", 30*time.Second, "How long in-flight requests may take to finish at shutdown.")
	fs.DurationVar(&f.readHeaderTimeout, "web.read-header-timeout", 10*time.Second, "How long a client may take to send request headers.")
	fs.DurationVar(&f.readTimeout, "web.read-timeout", time.Minute, "How long a client may take to send a whole request.")
	fs.DurationVar(&f.idleTimeout, "web.idle-timeout", 2*time.Minute, "How long an idle keep-alive connection is kept open.")
	fs.IntVar(&f.maxHeaderBytes, "web.max-header-bytes", 64<<10, "Largest request header block accepted.")
	fs.IntVar(&f.maxWrites, "web.max-concurrent-writes", 64, "Write requests processed at once, at most three quarters of them one tenant's; more wait briefly, then get 503.")
	fs.DurationVar(&f.writeQueueTimeout, "web.write-queue-timeout", time.Second, "How long a write request may wait for a free slot before it gets 503.")
	fs.StringVar(&f.ringSelf, "ring.self", "", "This instance's ring member name, overriding ring.self (e.g. the pod name in a StatefulSet).")
	return f, fs.Parse(args)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "logfmt":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log.format: %q is not logfmt or json", format)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check-config" {
		os.Exit(checkConfig(os.Args[2:], os.Stdout, os.Stderr))
	}
	f, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	logger, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fedgate:", err)
		os.Exit(2)
	}
	if err := run(f, logger); err != nil {
		logger.Error("fedgate stopped", "err", err)
		os.Exit(1)
	}
}

func run(f *flags, logger *slog.Logger) error {
	cfg, err := config.Load(f.configFile)
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	settings, err := gateway.NewSettings(cfg)
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	if f.ringSelf != "" {
		cfg.Ring.Self = f.ringSelf
	}
	if cfg.Ring.Self == "" && (len(cfg.Ring.Members) > 0 || cfg.Ring.DNS != "") {
		return errors.New("ring: set ring.self or --ring.self: this instance's member name")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Signals are caught from here on, so that a SIGHUP while waiting for a
	// first DNS answer or replaying is handled (after startup) rather than
	// killing the process; a SIGTERM or SIGINT ends that wait, and is kept
	// in startCtx (the channel may hold a SIGHUP) to stop once started.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	startCtx, stopStart := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopStart()
	var disc *ring.DNSDiscovery
	var rng *ring.Ring
	if cfg.Ring.DNS != "" {
		disc, err = ring.NewDNSDiscovery(ring.DNSOptions{Addr: cfg.Ring.DNS, Self: cfg.Ring.Self, Refresh: time.Duration(cfg.Ring.RefreshInterval),
			Scheme: cfg.Ring.Scheme, RemoveAfter: time.Duration(cfg.Ring.RemoveAfter)}, nil, logger, reg)
		if err == nil {
			rng, err = firstDNSRing(startCtx, disc, logger)
		}
	} else {
		rng, err = staticRing(cfg, f.internalAddr, logger)
	}
	if err != nil {
		return fmt.Errorf("ring: %w", err)
	}
	cur := ring.NewCurrent(rng)
	raiseOpenFilesLimit(logger)
	setGCPercent(logger)
	if err := os.MkdirAll(f.storagePath, 0o750); err != nil {
		return fmt.Errorf("storage path: %w", err)
	}

	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fedgate_ring_members", Help: "Members of the gateway ring.",
	}, func() float64 { return float64(cur.Load().Members()) }))

	hd := head.New(head.Options{Retention: time.Duration(cfg.Storage.Retention)}, reg)
	store, err := wal.Open(f.storagePath, hd, wal.Options{CheckpointInterval: time.Duration(cfg.Storage.CheckpointInterval)}, logger, reg)
	if err != nil {
		return err
	}
	// Every write goes to its tenant's owner: stored here, or forwarded.
	peerTLS, err := promcfg.NewTLSConfig(&cfg.Ring.TLSConfig)
	if err != nil {
		return fmt.Errorf("ring: tls_config: %w", err)
	}
	router := ring.NewRouter(cur, store, ring.RouterOptions{Secret: cfg.Ring.Secret, Timeout: time.Duration(cfg.Ring.ForwardTimeout), TLS: peerTLS}, logger, reg)
	// Pushes and forwarded batches decode in the same turns, one per CPU.
	decoding := new(turns.Turns)
	writes := gateway.NewWriteHandler(settings, router, gateway.WriteOptions{MaxConcurrent: f.maxWrites, QueueTimeout: f.writeQueueTimeout, Decoding: decoding, Head: hd, NotReady: wal.ErrNotReady}, logger, reg)
	health := &gateway.Health{}
	rl := newReloader(f.configFile, cfg, writes, logger, reg)
	rl.ringSelf = f.ringSelf

	public := http.NewServeMux()
	public.Handle("POST /api/v1/write", writes)
	public.HandleFunc("GET /-/healthy", health.Healthy)
	public.HandleFunc("GET /-/ready", health.ReadyHandler)

	internal := http.NewServeMux()
	fed := federate.NewHandler(hd, logger, reg)
	fed.OnlyOwned(func(tenant string) bool { _, self := cur.Load().Owner(tenant); return self })
	internal.Handle("GET /federate", untilReady(store, fed))
	if cfg.Ring.Clustered() {
		// Peers forward here, on the internal listener only.
		peers := ring.NewPeerHandler(cur, store, cfg.Ring.Secret, config.MaxRequestBytesLimit, logger, reg)
		peers.ShareTurns(decoding)
		internal.Handle("POST "+ring.PeerPath, peers)
	}
	internal.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	internal.HandleFunc("POST /-/reload", rl.serveHTTP)
	internal.HandleFunc("GET /-/healthy", health.Healthy)
	internal.HandleFunc("GET /-/ready", health.ReadyHandler)
	internal.HandleFunc("GET /{$}", statusPage(rl.current, hd, cur, writes))
	internal.HandleFunc("GET /debug/pprof/", pprof.Index)
	internal.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	internal.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	internal.HandleFunc("GET /debug/pprof/trace", pprof.Trace)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	servers := []*http.Server{
		newServer(f, public, time.Minute),
		newServer(f, internal, 5*time.Minute), // a /federate of millions of series may take a while to read
	}
	addrs := []string{f.listenAddr, f.internalAddr}
	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		ln, err := net.Listen("tcp", addrs[i])
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		logger.Info("listening", "listener", []string{"public", "internal"}[i], "address", ln.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			webFlags := &web.FlagConfig{WebListenAddresses: &[]string{addrs[i]}, WebSystemdSocket: new(bool), WebConfigFile: &f.webConfigFile}
			if err := web.Serve(ln, srv, webFlags, logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	// Listeners are up (healthy, writes answered 503) while the log replays.
	if err := replay(store, logger); err != nil {
		return err
	}
	var bg sync.WaitGroup
	bg.Go(func() { store.Run(ctx) })
	handoffs := make(chan struct{}, 1)
	handoffs <- struct{}{} // once after replay: the ring may have changed while down
	bg.Go(func() { handoffLoop(ctx, router, hd, store, rl, handoffs, logger) })
	if disc != nil {
		bg.Go(func() {
			disc.Run(ctx, cur, func(old, new *ring.Ring) {
				logger.Info("ring changed", "members", new.Members(), "was", old.Members())
				select {
				case handoffs <- struct{}{}:
				default: // one is pending already
				}
			})
		})
	}
	health.SetReady()
	logger.Info("fedgate ready", "tenants", len(cfg.Tenants), "retention", cfg.Storage.Retention.String(), "series", hd.NumSeries())

	var runErr error
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				_ = rl.reload()
				continue
			}
			logger.Info("shutting down", "signal", s.String())
			break wait
		case <-startCtx.Done(): // a SIGTERM or SIGINT the channel had no room for
			logger.Info("shutting down", "signal", "terminated")
			break wait
		case runErr = <-errc:
			break wait
		}
	}

	health.SetNotReady()
	sctx, scancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer scancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			logger.Warn("shutdown: requests still running were cut off", "err", err)
		}
	}
	wg.Wait()
	cancel()
	bg.Wait()
	if err := store.Close(); err != nil {
		logger.Error("closing the wal", "err", err)
	}
	if runErr != nil {
		return fmt.Errorf("serve: %w", runErr)
	}
	logger.Info("fedgate stopped")
	return nil
}

// untilReady answers 503 until the log is replayed, so that a partial head
// is never served as if it were whole; the central Prometheus sees up=0
// for that scrape instead.
func untilReady(store *wal.Storage, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !store.Ready() {
			http.Error(w, "replaying the write-ahead log", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// newServer bounds what one client can hold: slow or idle connections are
// closed, headers are bounded.
func newServer(f *flags, h http.Handler, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: f.readHeaderTimeout,
		ReadTimeout:       f.readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       f.idleTimeout,
		MaxHeaderBytes:    f.maxHeaderBytes,
	}
}

// replayer is the part of wal.Storage replay needs.
type replayer interface {
	Replay() error
	Ready() bool
}

// replay replays the log. Corruption is logged and served past: the store
// is ready with what could be read. A store left not ready (the log's
// directory or a sync failed) is an error, and fedgate stops rather than
// report ready while refusing every write.
func replay(store replayer, logger *slog.Logger) error {
	err := store.Replay()
	if !store.Ready() {
		if err == nil {
			err = errors.New("the log is not ready")
		}
		return fmt.Errorf("wal replay: %w", err)
	}
	if err != nil {
		logger.Error("wal replay found corruption; serving what could be read", "err", err)
	}
	return nil
}

// defaultGCPercent is the Go GC's GOGC unless the environment sets one.
// fedgate allocates almost nothing per sample once its series are held,
// so collections are rare whatever the setting; a heap goal of 1.5x the
// live heap instead of 2x lowers the peak memory for little CPU
// (README.md, "Running it", says what memory goes where).
const defaultGCPercent = 50

func setGCPercent(logger *slog.Logger) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		return
	}
	debug.SetGCPercent(defaultGCPercent)
	logger.Debug("Go GC percent set", "gogc", defaultGCPercent)
}

// raiseOpenFilesLimit lifts the soft limit on open files to the hard
// limit, so that thousands of pushing clusters' connections fit.
func raiseOpenFilesLimit(logger *slog.Logger) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		logger.Warn("cannot read the open-files limit", "err", err)
		return
	}
	if l.Cur >= l.Max {
		return
	}
	old := l.Cur
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		logger.Warn("cannot raise the open-files limit", "limit", old, "err", err)
		return
	}
	logger.Info("raised the open-files limit", "from", old, "to", l.Cur)
}
