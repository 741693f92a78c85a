package megaphone

import (
	"context"

	"github.com/labstack/echo/v4"

	"github.com/switchboard/switchboard/internal/service"
)

// Service mounts Megaphone on the gateway.
type Service struct {
	broker  *Broker
	api     *api
	origins []string
}

var _ service.Service = (*Service)(nil)

// NewService builds the Megaphone service from the gateway's dependencies.
func NewService(deps service.Deps) *Service {
	cfg := deps.Config
	b := New(Options{
		Agent:        cfg.Megaphone.Agent,
		BufferSize:   cfg.Megaphone.BufferSize,
		WriteWait:    cfg.Megaphone.WriteWait,
		PollDuration: cfg.Megaphone.PollDuration,
		ChannelTTL:   cfg.Megaphone.ChannelTTL,
		Replicas:     cfg.JetStream.Replicas,
		WebhookURL:   cfg.Megaphone.WebhookURL,
	}, deps.NC, deps.JS, deps.Logger, deps.Registry)
	return &Service{
		broker: b,
		api: &api{b: b, streams: deps.Streams, log: b.log, bodyLimit: int64(cfg.HTTP.BodyLimit),
			bodyTimeout: cfg.HTTP.BodyTimeout, adminToken: cfg.Megaphone.AdminToken},
		origins: cfg.HTTP.CORSOrigins,
	}
}

// Broker is the service's core.
func (s *Service) Broker() *Broker { return s.broker }

// Provision creates the NATS resources and starts background work.
func (s *Service) Provision(ctx context.Context) error { return s.broker.Provision(ctx) }

// Mount registers the routes.
func (s *Service) Mount(e *echo.Echo) { s.api.mount(e, s.origins) }

// Close stops background work.
func (s *Service) Close() error { return s.broker.Close() }
