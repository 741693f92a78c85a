package middleman

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/switchboard/switchboard/internal/netpoll"
	"github.com/switchboard/switchboard/internal/protocol"
)

// Service is the middleman protocol as a gateway hosts it: the trust
// bucket, the [Hub] and the GET /mm WebSocket upgrade.
type Service struct {
	cfg     Config
	deps    protocol.Deps
	log     *slog.Logger
	origins originPolicy
	trust   *Trust
	hub     *Hub
	// poller waits for idle connections (see wsConn.Park).
	poller *netpoll.Poller
}

var _ interface {
	Provision(context.Context) error
	Routes() []protocol.Route
	Close() error
} = (*Service)(nil)

// New returns the middleman service. Zero fields of cfg mean their
// defaults.
func New(cfg Config, deps protocol.Deps) *Service {
	return &Service{
		cfg:     cfg.withDefaults(),
		deps:    deps,
		log:     deps.Logger.With("component", "middleman"),
		origins: newOriginPolicy(cfg.AllowedOrigins),
		poller:  netpoll.New(),
	}
}

// Provision opens the trust bucket and starts the hub.
func (s *Service) Provision(ctx context.Context) error {
	trust, err := OpenTrust(ctx, s.deps.JS, s.deps.Replicas, s.log)
	if err != nil {
		return err
	}
	hub, err := NewHub(s.deps.NC, trust, s.cfg, s.deps.Registry, s.log)
	if err != nil {
		trust.Close()
		return fmt.Errorf("middleman: %w", err)
	}
	s.trust, s.hub = trust, hub
	return nil
}

// Routes is GET /mm, the WebSocket upgrade.
func (s *Service) Routes() []protocol.Route {
	return []protocol.Route{{Method: http.MethodGet, Path: Route, Handler: http.HandlerFunc(s.upgrade)}}
}

// Close stops the hub, the trust watcher and the poller; sessions ended
// before.
func (s *Service) Close() error {
	defer s.poller.Close()
	if s.hub != nil {
		s.hub.Close()
	}
	if s.trust != nil {
		s.trust.Close()
	}
	return nil
}
