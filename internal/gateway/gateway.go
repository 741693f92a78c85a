package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchboard/switchboard/internal/embedded"
	"github.com/switchboard/switchboard/internal/jsutil"
	"github.com/switchboard/switchboard/internal/protocol"
)

// Gateway is a running gateway. Create it with [Start].
type Gateway struct {
	cfg      *Config
	log      *slog.Logger
	registry *prometheus.Registry
	tracker  *protocol.Tracker
	observe  echo.MiddlewareFunc
	srv      *http.Server
	ln       net.Listener
	certs    *certificates // the listener's certificate, with tls.*
	served   chan error
	// router serves every request: the start-up router (operational
	// routes, everything else 503 NOT_READY) until provisioning is done,
	// then the full one.
	router atomic.Pointer[echo.Echo]

	// Start-up runs in boot; Shutdown waits for it to end (bootDone)
	// before it reads js and services.
	bootCancel context.CancelFunc
	bootDone   chan struct{}
	phase      atomic.Pointer[string]
	resources  *jsutil.Progress // streams and buckets being created
	starting   *jsutil.Progress // services being provisioned
	js         jetstream.JetStream
	services   []namedService
	ready      chan struct{}

	mu       sync.Mutex // guards embedded
	embedded *embedded.Server

	nc        atomic.Pointer[nats.Conn]
	relayNC   atomic.Pointer[nats.Conn] // the relay's own connection, if any
	lostOnce  sync.Once
	lostTotal prometheus.Counter

	failed   chan struct{}
	failOnce sync.Once
	err      error // why the gateway failed; read after failed is closed

	stopping atomic.Bool
	stopOnce sync.Once
	stopErr  error
}

// namedService is a protocol with the name /readyz shows while it is
// provisioned.
type namedService struct {
	name string
	Protocol
}

// provisionTimeout bounds provisioning; a fresh cluster needs a few
// seconds to elect its meta leader, a healthy one well under a second.
const provisionTimeout = 60 * time.Second

// Run starts a gateway and serves until ctx ends or the gateway fails
// (start-up failed for good, the NATS connection closed for good, the HTTP
// server stopped), then shuts down gracefully within cfg.Shutdown.Grace. It
// returns nil only for a clean stop after ctx ended, so a failure becomes a
// non-zero exit and the supervisor restarts the process.
func Run(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	g, err := Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	stopHUP := g.reloadOnSIGHUP()
	defer stopHUP()
	var cause error
	select {
	case <-ctx.Done():
	case err := <-g.served:
		logger.Error("http server stopped", "err", err)
		cause = fmt.Errorf("gateway: http server: %w", err)
	case <-g.failed:
		cause = g.err
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Grace)
	defer cancel()
	return errors.Join(cause, g.Shutdown(sctx))
}

// Start opens the HTTP listener and returns; /healthz answers 200 at
// once. Connecting to NATS and provisioning continue in the background:
// until they are done /readyz answers 503 naming what is still being
// provisioned and protocol routes answer 503 NOT_READY. [Gateway.Ready]
// is closed when the gateway is ready, [Gateway.Failed] if start-up fails
// for good. ctx's values reach start-up, its end does not: Shutdown stops
// a start-up still under way.
func Start(ctx context.Context, cfg *Config, logger *slog.Logger) (*Gateway, error) {
	g := &Gateway{
		cfg:       cfg,
		log:       logger,
		registry:  prometheus.NewRegistry(),
		served:    make(chan error, 1),
		bootDone:  make(chan struct{}),
		resources: jsutil.NewProgress(logger.With("component", "provision")),
		starting:  jsutil.NewProgress(nil),
		ready:     make(chan struct{}),
		failed:    make(chan struct{}),
	}
	g.setPhase("connecting to NATS")
	g.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g.natsMetrics()
	g.tracker = protocol.NewTracker(g.registry)
	g.observe = g.newObserve()
	g.router.Store(g.newRouter(nil))
	if err := g.listen(); err != nil {
		return nil, err
	}
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.bootCancel = cancel
	go g.boot(bctx)
	return g, nil
}

// listen opens the listener and serves g.router on it.
func (g *Gateway) listen() error {
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen %q: %w", g.cfg.Listen, err)
	}
	ln = g.capConns(ln)
	g.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.router.Load().ServeHTTP(w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
		Protocols:         g.protocols(),
	}
	if g.cfg.TLS.Enabled() {
		if g.srv.TLSConfig, err = g.tlsConfig(); err != nil {
			_ = ln.Close()
			return err
		}
	}
	g.ln = ln
	go func() {
		var err error
		if g.srv.TLSConfig != nil {
			err = g.srv.ServeTLS(ln, "", "")
		} else {
			err = g.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.served <- err
		}
	}()
	g.log.Info("gateway listening", "addr", ln.Addr().String())
	return nil
}

// boot connects to NATS, provisions every service and switches to the
// full router. A failure fails the gateway.
func (g *Gateway) boot(ctx context.Context) {
	defer close(g.bootDone)
	began := time.Now()
	if err := g.connect(ctx); err != nil {
		g.startFailed(fmt.Errorf("%w: connect: %w", ErrStart, err))
		return
	}
	g.services = newServices(g.cfg, protocol.Deps{
		NC: g.nc.Load(), JS: g.js, Replicas: g.cfg.JetStream.Replicas, Partitions: g.cfg.JetStream.Partitions, Logger: g.log, Registry: g.registry, Streams: g.tracker,
		SoleGateway: g.embeddedServer() != nil,
		ServeAgain:  g.serveAgain,
		HTTP: protocol.HTTP{
			BodyLimit: int64(g.cfg.HTTP.BodyLimit), BodyTimeout: g.cfg.HTTP.BodyTimeout,
			TrustedProxies: g.cfg.HTTP.TrustedProxies, CORSOrigins: g.cfg.HTTP.CORSOrigins,
		},
	}, g.relayConn())
	g.services = g.withConsole(g.services)
	if err := g.provision(ctx); err != nil {
		g.startFailed(fmt.Errorf("%w: %w", ErrStart, err))
		return
	}
	g.router.Store(g.newRouter(g.services))
	close(g.ready)
	g.log.Info("gateway ready", "took", time.Since(began).Round(time.Millisecond))
}

// startFailed fails start-up. When the connection closed for good under
// it, provisioning may see "connection closed" before nats.go runs the
// closed handler: the loss is the cause and is reported as such.
func (g *Gateway) startFailed(err error) {
	if nc := g.nc.Load(); nc != nil && nc.IsClosed() {
		g.onClosed(nc)
	}
	if !g.stopping.Load() && g.Err() == nil {
		g.log.Error("gateway start-up failed", "err", err)
	}
	g.fail(err)
}

// fail records why the gateway cannot serve and closes g.failed; the first
// reason wins. A failure caused by our own shutdown is not one.
func (g *Gateway) fail(err error) {
	if g.stopping.Load() {
		return
	}
	g.failOnce.Do(func() {
		g.err = err
		close(g.failed)
		g.bootCancel()
	})
}

func (g *Gateway) setPhase(p string) { g.phase.Store(&p) }

// Ready is closed once the gateway is provisioned and serves every route.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Failed is closed when the gateway can no longer serve: start-up failed
// for good, or its NATS connection closed for good ([ErrNATSClosed]).
// [Gateway.Err] says why. Shutdown does not close it.
func (g *Gateway) Failed() <-chan struct{} { return g.failed }

// Err is why the gateway failed (wrapping [ErrStart] or [ErrNATSClosed]),
// or nil while it has not.
func (g *Gateway) Err() error {
	select {
	case <-g.failed:
		return g.err
	default:
		return nil
	}
}

// WaitReady waits until the gateway is ready (nil), fails (its error) or
// ctx ends.
func (g *Gateway) WaitReady(ctx context.Context) error {
	select {
	case <-g.ready:
		return nil
	case <-g.failed:
		return g.err
	case <-ctx.Done():
		return fmt.Errorf("gateway: wait ready: %w", ctx.Err())
	}
}

// Addr is the address the HTTP listener is bound to.
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// URL is the gateway's base URL (http://host:port, https:// with tls.*).
func (g *Gateway) URL() string {
	if g.cfg.TLS.Enabled() {
		return "https://" + g.ln.Addr().String()
	}
	return "http://" + g.ln.Addr().String()
}

// EmbeddedURL is the client URL of the embedded nats-server, or "" (also
// while it is still starting).
func (g *Gateway) EmbeddedURL() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.embedded == nil {
		return ""
	}
	return g.embedded.ClientURL()
}

// Shutdown stops the gateway in the documented order: not ready, end a
// start-up still under way, stop accepting, end tracked streams, let
// ordinary and drained requests finish, then end the streams that go
// last (relayed upgraded connections), close services, drain NATS, stop
// the embedded server. It is idempotent.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.stopOnce.Do(func() { g.stopErr = g.shutdown(ctx) })
	return g.stopErr
}

func (g *Gateway) shutdown(ctx context.Context) error {
	g.log.Info("gateway shutting down")
	g.stopping.Store(true)
	g.bootCancel()
	<-g.bootDone // every start-up step ends when its context does
	var errs []error
	srvDone := make(chan error, 1)
	srvIdle := make(chan struct{}) // every ordinary request answered
	go func() { srvDone <- g.srv.Shutdown(ctx); close(srvIdle) }()
	// Long-lived connections that must outlive the ordinary requests
	// (relayed upgraded connections) end once those are answered.
	if err := g.tracker.ShutdownAfter(ctx, srvIdle); err != nil {
		errs = append(errs, fmt.Errorf("end streams: %w", err))
	}
	if err := <-srvDone; err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		_ = g.srv.Close()
	}
	for _, s := range g.services {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	g.closeNATS()
	g.log.Info("gateway stopped")
	return errors.Join(errs...)
}
