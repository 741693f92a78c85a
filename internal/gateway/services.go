package gateway

import (
	"github.com/switchboard/switchboard/internal/megaphone"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/pipe"
	"github.com/switchboard/switchboard/internal/relayhttp"
	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/service"
)

// newServices builds every protocol the gateway serves.
func newServices(deps service.Deps) []namedService {
	cfg := deps.Config
	pdeps := protocol.Deps{
		NC: deps.NC, JS: deps.JS, Replicas: cfg.JetStream.Replicas, Logger: deps.Logger,
		Registry: deps.Registry, Streams: deps.Streams,
		HTTP: protocol.HTTP{
			BodyLimit: int64(cfg.HTTP.BodyLimit), BodyTimeout: cfg.HTTP.BodyTimeout,
			TrustedProxies: cfg.HTTP.TrustedProxies, CORSOrigins: cfg.HTTP.CORSOrigins,
		},
	}
	_ = pdeps
	return []namedService{
		{"megaphone", legacy{megaphone.NewService(deps)}},
		{"pipe", legacy{pipe.New(deps)}},
		{"middleman", legacy{middleman.New(deps)}},
		{"relay", legacy{relayhttp.New(deps)}},
	}
}

// legacy hosts a protocol that still mounts itself on echo.
type legacy struct{ service.Service }

func (legacy) Routes() []protocol.Route { return nil }
