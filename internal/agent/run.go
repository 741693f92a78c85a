package agent

import (
	"context"
	"errors"
	"log/slog"

	"github.com/switchboard/switchboard/internal/config"
)

// errRelayPending is returned until the relay lands (issue: HTTP relay).
var errRelayPending = errors.New("relay not implemented yet")

// RunUpstream connects to NATS and serves the configured upstreams.
func RunUpstream(ctx context.Context, cfg *config.AgentUpstream, logger *slog.Logger) error {
	nc, err := connect(ctx, "switchboard-agent-upstream", cfg.NATS, logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	return errRelayPending
}

// RunClient connects to NATS and relays a local listener to one upstream.
func RunClient(ctx context.Context, cfg *config.AgentClient, logger *slog.Logger) error {
	nc, err := connect(ctx, "switchboard-agent-client", cfg.NATS, logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	return errRelayPending
}
