package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/relay"
	"github.com/switchboard/switchboard/internal/subjects"
)

// RunClient relays every request of a local HTTP listener to one upstream
// until ctx ends, then shuts the listener down within cfg.Shutdown.Grace.
func RunClient(ctx context.Context, cfg *AgentClient, logger *slog.Logger) error {
	c, err := StartClient(ctx, cfg, logger)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-c.served:
		c.log.Error("http server stopped", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Grace)
	defer cancel()
	return c.Shutdown(sctx)
}

// Client is a running `agent client`.
type Client struct {
	log    *slog.Logger
	nc     *nats.Conn
	ln     net.Listener
	srv    *http.Server
	relay  *relay.Client
	served chan error
}

// StartClient connects to NATS and starts the local listener.
func StartClient(ctx context.Context, cfg *AgentClient, logger *slog.Logger) (*Client, error) {
	prefix, err := subjects.RelayInbox(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("agent: upstream %q: %w", cfg.Upstream, err)
	}
	proxies, err := relay.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("agent: trusted_proxies: %w", err)
	}
	log := logger.With("component", "agent-client", "upstream", cfg.Upstream)
	nc, err := connect(ctx, "switchboard-agent client="+cfg.Upstream, cfg.NATS, log, nats.CustomInboxPrefix(prefix))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("agent: listen %q: %w", cfg.Listen, err)
	}
	rc := relay.NewClient(nc, relay.Config{
		AgentWait:       cfg.AgentWait,
		AckTimeout:      cfg.AckTimeout,
		ResponseTimeout: cfg.ResponseTimeout,
		// Upgraded connections are closed by relay.Close, after the
		// ordinary requests drained in Shutdown.
		MaxUpgraded:        cfg.MaxUpgraded,
		UpgradeIdleTimeout: cfg.UpgradeIdleTimeout,
	}, nil, log)
	upstream := cfg.Upstream
	c := &Client{log: log, nc: nc, ln: ln, relay: rc, served: make(chan error, 1)}
	c.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Forward keeps the forwarding headers of trusted proxies only.
			r = r.WithContext(relay.WithTrustedProxies(r.Context(), proxies))
			_ = rc.Forward(r.Context(), w, r, upstream, r.URL.EscapedPath())
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := c.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.served <- err
		}
	}()
	log.Info("agent client listening", "addr", ln.Addr().String())
	return c, nil
}

// Addr is the listener's address.
func (c *Client) Addr() string { return c.ln.Addr().String() }

// Shutdown stops the listener, waits for requests in flight until ctx
// ends (then closes them), and drains NATS.
func (c *Client) Shutdown(ctx context.Context) error {
	err := c.srv.Shutdown(ctx)
	if err != nil {
		_ = c.srv.Close()
	}
	c.relay.Close()
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	closeConn(dctx, c.nc)
	return err
}
