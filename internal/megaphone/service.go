package megaphone

import (
	"context"

	"github.com/switchboard/switchboard/internal/netpoll"
	"github.com/switchboard/switchboard/internal/protocol"
)

// Service is Megaphone as a gateway hosts it: the [Broker] and its HTTP
// routes.
type Service struct {
	broker *Broker
	api    *api
}

var _ interface {
	Provision(context.Context) error
	Routes() []protocol.Route
	Close() error
} = (*Service)(nil)

// New builds Megaphone from its configuration and the gateway's
// dependencies; call [Service.Provision] before serving [Service.Routes].
func New(cfg Config, deps protocol.Deps) *Service {
	b := NewBroker(cfg, deps)
	return &Service{
		broker: b,
		api: &api{b: b, streams: deps.Streams, log: b.log, bodyLimit: deps.HTTP.BodyLimit,
			bodyTimeout: deps.HTTP.BodyTimeout, adminToken: b.cfg.AdminToken, parkPolls: !b.cfg.KeepAlivePolls, opening: make(chan struct{}, maxOpening),
			poller: netpoll.New(), serveAgain: deps.ServeAgain},
	}
}

// Broker is the service's core.
func (s *Service) Broker() *Broker { return s.broker }

// Provision creates the NATS resources and starts background work.
func (s *Service) Provision(ctx context.Context) error { return s.broker.Provision(ctx) }

// Routes are the Megaphone routes: the public ones behind the gateway's
// CORS handling, and the /admin routes when an admin token is set.
func (s *Service) Routes() []protocol.Route { return s.api.routes() }

// Close stops background work and the poller of parked polls (they ended
// with the gateway's streams before).
func (s *Service) Close() error {
	err := s.broker.Close()
	_ = s.api.poller.Close()
	return err
}
