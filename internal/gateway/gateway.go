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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/embedded"
	"github.com/switchboard/switchboard/internal/natsconn"
	"github.com/switchboard/switchboard/internal/service"
)

// Gateway is a running gateway. Create it with [Start].
type Gateway struct {
	cfg      *config.Gateway
	log      *slog.Logger
	embedded *embedded.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	registry *prometheus.Registry
	tracker  *service.Tracker
	services []service.Service
	srv      *http.Server
	ln       net.Listener
	served   chan error
	ready    atomic.Bool
	stopOnce sync.Once
	stopErr  error
}

// Run starts a gateway, serves until ctx ends, then shuts down gracefully
// within cfg.Shutdown.Grace.
func Run(ctx context.Context, cfg *config.Gateway, logger *slog.Logger) error {
	g, err := Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-g.served:
		logger.Error("http server stopped", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Grace)
	defer cancel()
	return g.Shutdown(sctx)
}

// Start connects to NATS, provisions every service and starts serving. It
// returns once the listener is open; the gateway is ready when NATS is.
func Start(ctx context.Context, cfg *config.Gateway, logger *slog.Logger) (*Gateway, error) {
	g := &Gateway{cfg: cfg, log: logger, registry: prometheus.NewRegistry(), served: make(chan error, 1)}
	if err := g.connect(ctx); err != nil {
		g.closeNATS()
		return nil, err
	}
	g.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g.tracker = service.NewTracker(g.registry)
	deps := service.Deps{Config: cfg, NC: g.nc, JS: g.js, Logger: logger, Registry: g.registry, Streams: g.tracker}
	g.services = newServices(deps)
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, s := range g.services {
		if err := s.Provision(pctx); err != nil {
			g.closeNATS()
			return nil, fmt.Errorf("gateway: provision: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		g.closeNATS()
		return nil, fmt.Errorf("gateway: listen %q: %w", cfg.Listen, err)
	}
	g.ln = ln
	e := g.newEcho()
	g.srv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.served <- err
		}
	}()
	g.ready.Store(true)
	logger.Info("gateway listening", "addr", ln.Addr().String())
	return g, nil
}

// connect starts the embedded server when no URL is configured, then
// connects and opens JetStream.
func (g *Gateway) connect(ctx context.Context) error {
	opts, err := natsconn.Options("switchboard-gateway", natsconn.Auth{
		Creds: g.cfg.NATS.Creds, Token: g.cfg.NATS.Token, User: g.cfg.NATS.User, Password: g.cfg.NATS.Password,
	}, g.log.With("component", "nats"))
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	url := g.cfg.NATS.URL
	if url == "" {
		agents := make([]embedded.Agent, 0, len(g.cfg.Embedded.Agents))
		for _, a := range g.cfg.Embedded.Agents {
			agents = append(agents, embedded.Agent{User: a.User, Password: a.Password, Upstreams: a.Upstreams})
		}
		g.embedded, err = embedded.Start(embedded.Config{
			Listen: g.cfg.Embedded.Listen, StoreDir: g.cfg.DataDir, Agents: agents,
		}, g.log)
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		opts = append(opts, g.embedded.ConnectOptions()...)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	g.nc, err = natsconn.Connect(cctx, url, opts...)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	g.js, err = jetstream.New(g.nc)
	if err != nil {
		return fmt.Errorf("gateway: jetstream: %w", err)
	}
	g.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchboard_nats_connected",
		Help: "1 while the gateway's NATS connection is up, else 0.",
	}, func() float64 {
		if g.nc.IsConnected() {
			return 1
		}
		return 0
	}))
	return nil
}

// Addr is the address the HTTP listener is bound to.
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// URL is the gateway's base URL (http://host:port).
func (g *Gateway) URL() string { return "http://" + g.ln.Addr().String() }

// EmbeddedURL is the client URL of the embedded nats-server, or "".
func (g *Gateway) EmbeddedURL() string {
	if g.embedded == nil {
		return ""
	}
	return g.embedded.ClientURL()
}

// Shutdown stops the gateway in the documented order. It is idempotent.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.stopOnce.Do(func() { g.stopErr = g.shutdown(ctx) })
	return g.stopErr
}

func (g *Gateway) shutdown(ctx context.Context) error {
	g.log.Info("gateway shutting down")
	g.ready.Store(false)
	var errs []error
	srvDone := make(chan error, 1)
	go func() { srvDone <- g.srv.Shutdown(ctx) }()
	if err := g.tracker.Shutdown(ctx); err != nil {
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

// closeNATS drains the connection, then stops the embedded server.
func (g *Gateway) closeNATS() {
	if g.nc != nil && !g.nc.IsClosed() {
		closed := make(chan struct{})
		g.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := g.nc.Drain(); err != nil {
			g.nc.Close()
		} else {
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				g.nc.Close()
			}
		}
	}
	if g.embedded != nil {
		g.embedded.Shutdown()
	}
}
