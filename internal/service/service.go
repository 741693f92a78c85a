// Package service defines what a protocol needs from the gateway and what
// the gateway needs from a protocol, so that the gateway can mount
// Megaphone, pipes, middleman and the relay without knowing their insides.
package service

import (
	"context"
	"log/slog"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/protocol"
)

// Deps are the shared dependencies handed to every service.
type Deps struct {
	// Config is the whole gateway configuration (read-only).
	Config *config.Gateway
	// NC is the gateway's NATS connection.
	NC *nats.Conn
	// JS is JetStream on NC.
	JS jetstream.JetStream
	// Logger is scoped by the service with .With("component", name).
	Logger *slog.Logger
	// Registry receives the service's metrics.
	Registry prometheus.Registerer
	// Streams tracks long-lived requests so shutdown can end them.
	Streams *Tracker
}

// Service is one protocol mounted on the gateway.
type Service interface {
	// Provision creates the NATS resources the service needs. It must be
	// idempotent and safe when several gateways run it at once.
	Provision(ctx context.Context) error
	// Mount registers the service's routes.
	Mount(e *echo.Echo)
	// Close stops background work. It is called after tracked streams
	// ended and before the NATS connection drains.
	Close() error
}

// Tracker is protocol.Tracker, during the move to internal/protocol.
type Tracker = protocol.Tracker

// ErrShuttingDown is protocol.ErrShuttingDown.
var ErrShuttingDown = protocol.ErrShuttingDown

// NewTracker is protocol.NewTracker.
func NewTracker(reg prometheus.Registerer) *Tracker { return protocol.NewTracker(reg) }
