package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/natsconn"
)

// connect dials NATS with the agent's credentials. It waits for the first
// connection until ctx ends (agents on remote networks may start before
// the cluster is reachable); reconnects afterwards are forever.
func connect(ctx context.Context, name string, n config.NATS, logger *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := natsconn.Options(name, natsconn.Auth{Creds: n.Creds, Token: n.Token, User: n.User, Password: n.Password}, logger.With("component", "nats"))
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	tlsOpts, err := natsconn.TLS{CAFile: n.TLSCAFile, CertFile: n.TLSCertFile, KeyFile: n.TLSKeyFile}.Options()
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	opts = append(append(opts, tlsOpts...), extra...)
	nc, err := natsconn.Connect(ctx, n.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	logger.Info("nats connected", "url", nc.ConnectedUrlRedacted())
	return nc, nil
}

// closeConn drains nc and waits for it to close, bounded by ctx.
func closeConn(ctx context.Context, nc *nats.Conn) { natsconn.Drain(ctx, nc) }
