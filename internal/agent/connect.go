package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/natsconn"
)

// connect dials NATS with the agent's credentials; reconnects are forever.
func connect(ctx context.Context, name string, n config.NATS, logger *slog.Logger) (*nats.Conn, error) {
	opts, err := natsconn.Options(name, natsconn.Auth{Creds: n.Creds, Token: n.Token, User: n.User, Password: n.Password}, logger.With("component", "nats"))
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, err := natsconn.Connect(cctx, n.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	logger.Info("nats connected", "url", nc.ConnectedUrlRedacted())
	return nc, nil
}
