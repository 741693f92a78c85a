package middleman

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/labstack/echo/v4"

	"github.com/switchboard/switchboard/internal/service"
)

// Service mounts the middleman protocol on a gateway.
type Service struct {
	deps    service.Deps
	log     *slog.Logger
	opts    Options
	origins originPolicy
	trust   *Trust
	hub     *Hub
}

var _ service.Service = (*Service)(nil)

// New returns the middleman service configured from deps.Config.Middleman.
func New(deps service.Deps) *Service {
	c := deps.Config.Middleman
	return &Service{
		deps: deps,
		log:  deps.Logger.With("component", "middleman"),
		opts: Options{
			ServiceKeys:    c.ServiceKeys,
			ClientKeys:     c.ClientKeys,
			SuperKeys:      c.SuperKeys,
			RequestTimeout: c.RequestTimeout,
			MaxFrame:       int(c.MaxFrame),
		},
		origins: newOriginPolicy(c.AllowedOrigins),
	}
}

// Provision opens the trust bucket and starts the hub.
func (s *Service) Provision(ctx context.Context) error {
	trust, err := OpenTrust(ctx, s.deps.JS, s.deps.Config.JetStream.Replicas, s.log)
	if err != nil {
		return err
	}
	hub, err := NewHub(s.deps.NC, trust, s.opts, s.deps.Registry, s.log)
	if err != nil {
		trust.Close()
		return fmt.Errorf("middleman: %w", err)
	}
	s.trust, s.hub = trust, hub
	return nil
}

// Mount registers GET /mm.
func (s *Service) Mount(e *echo.Echo) { e.GET(Route, s.upgrade) }

// Close stops the hub and the trust watcher; sessions ended before.
func (s *Service) Close() error {
	if s.hub != nil {
		s.hub.Close()
	}
	if s.trust != nil {
		s.trust.Close()
	}
	return nil
}
