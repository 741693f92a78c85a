package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/embedded"
	"github.com/switchboard/switchboard/internal/natsconn"
)

// connectTimeout bounds the wait for the first NATS connection.
const connectTimeout = 30 * time.Second

// connect starts the embedded server when no URL is configured, then
// connects and opens JetStream.
func (g *Gateway) connect(ctx context.Context) error {
	opts, err := natsconn.Options("switchboard-gateway", natsconn.Auth{
		Creds: g.cfg.NATS.Creds, Token: g.cfg.NATS.Token, User: g.cfg.NATS.User, Password: g.cfg.NATS.Password,
	}, g.log.With("component", "nats"))
	if err != nil {
		return err
	}
	opts = append(opts, nats.ClosedHandler(g.onClosed))
	url := g.cfg.NATS.URL
	if url != "" {
		if opts, err = g.withTLS(opts); err != nil {
			return err
		}
	}
	if url == "" {
		es, err := g.startEmbedded()
		if err != nil {
			return err
		}
		opts = append(opts, es.ConnectOptions()...)
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	nc, err := natsconn.Connect(cctx, url, opts...)
	if err != nil {
		return err
	}
	g.nc.Store(nc)
	if nc.IsClosed() { // closed before it was stored: onClosed ignored it
		g.onClosed(nc)
	}
	if g.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return g.connectRelay(cctx, url)
}

// connectRelay opens the relay's own connection, confined to relay
// subjects: always in embedded mode, with nats.relay_* credentials against
// an external cluster. Without it the relay shares the gateway's
// connection. Either way subjects.CheckPeer is what keeps an agent from
// steering the gateway; this connection's permissions are the second wall.
func (g *Gateway) connectRelay(ctx context.Context, url string) error {
	auth, set := g.cfg.NATS.relayAuth()
	if !set && g.embeddedServer() == nil {
		return nil
	}
	opts, err := natsconn.Options("switchboard-gateway-relay", auth, g.log.With("component", "nats-relay"))
	if err != nil {
		return err
	}
	opts = append(opts, nats.ClosedHandler(g.onClosed))
	if es := g.embeddedServer(); es != nil {
		opts = append(opts, es.RelayConnectOptions()...)
	} else if opts, err = g.withTLS(opts); err != nil {
		return err
	}
	nc, err := natsconn.Connect(ctx, url, opts...)
	if err != nil {
		return fmt.Errorf("relay connection: %w", err)
	}
	g.relayNC.Store(nc)
	if nc.IsClosed() {
		g.onClosed(nc)
	}
	return nil
}

// withTLS adds the nats.tls_* settings to opts of a connection to an
// external cluster (in-process connections need none).
func (g *Gateway) withTLS(opts []nats.Option) ([]nats.Option, error) {
	n := g.cfg.NATS
	tlsOpts, err := natsconn.TLS{CAFile: n.TLSCAFile, CertFile: n.TLSCertFile, KeyFile: n.TLSKeyFile}.Options()
	if err != nil {
		return nil, err
	}
	return append(opts, tlsOpts...), nil
}

// embeddedServer is the embedded server, or nil in external mode.
func (g *Gateway) embeddedServer() *embedded.Server {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.embedded
}

// relayConn is the connection the relay uses: its own, or the gateway's.
func (g *Gateway) relayConn() *nats.Conn {
	if nc := g.relayNC.Load(); nc != nil {
		return nc
	}
	return g.nc.Load()
}

func (g *Gateway) startEmbedded() (*embedded.Server, error) {
	agents := make([]embedded.Agent, 0, len(g.cfg.Embedded.Agents))
	for _, a := range g.cfg.Embedded.Agents {
		agents = append(agents, embedded.Agent{User: a.User, Password: a.Password, Upstreams: a.Upstreams})
	}
	e := g.cfg.Embedded
	es, err := embedded.Start(embedded.Config{
		Listen: e.Listen, StoreDir: g.cfg.DataDir, Agents: agents, Websocket: e.Websocket,
		TLS: embedded.TLS{CertFile: e.TLSCertFile, KeyFile: e.TLSKeyFile, CAFile: e.TLSCAFile, VerifyClients: e.TLSVerifyClients},
	}, g.log)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.embedded = es
	g.mu.Unlock()
	return es, nil
}

// onClosed runs when the NATS connection is closed for good. During our
// own shutdown that is expected. Otherwise nats.go gave up on it (a fatal
// -ERR such as 'maximum control line exceeded', or credentials refused
// twice while reconnecting) and will never reconnect: the gateway fails.
//
// Decision: the gateway does not dial a new connection; it fails, so Run
// shuts down gracefully and returns an error, the process exits non-zero
// and its supervisor (Kubernetes, systemd, compose) restarts it, with
// /healthz answering 503 meanwhile. Re-dialling in-process would have to
// re-create every subscription, consumer, KV watcher and request muxer of
// every protocol on the new connection, and any one missed would leave a
// gateway that looks healthy but silently drops messages; a fresh process
// rebuilds all of it through the one start-up path that is tested.
func (g *Gateway) onClosed(nc *nats.Conn) {
	if g.nc.Load() != nc && g.relayNC.Load() != nc {
		return // closed while connecting: connect reports it
	}
	if g.stopping.Load() {
		return
	}
	g.lostOnce.Do(func() {
		cause := nc.LastError()
		g.lostTotal.Inc()
		g.log.Error("nats connection closed for good; the gateway stops so that it is restarted",
			"err", cause, "status", nc.Status().String())
		g.fail(fmt.Errorf("%w: %v", ErrNATSClosed, cause))
	})
}

// closeNATS drains the connection, then stops the embedded server.
func (g *Gateway) closeNATS() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	natsconn.Drain(ctx, g.relayNC.Load())
	natsconn.Drain(ctx, g.nc.Load())
	cancel()
	g.mu.Lock()
	es := g.embedded
	g.mu.Unlock()
	if es != nil {
		es.Shutdown()
	}
}

// natsMetrics registers the connection's gauge and loss counter.
func (g *Gateway) natsMetrics() {
	g.lostTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_nats_connection_lost_total",
		Help: "NATS connections closed for good outside a shutdown (the gateway then exits non-zero).",
	})
	g.registry.MustRegister(g.lostTotal, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchboard_nats_connected",
		Help: "1 while the gateway's NATS connection is up, else 0.",
	}, func() float64 {
		if nc := g.nc.Load(); nc != nil && nc.IsConnected() {
			return 1
		}
		return 0
	}))
}
