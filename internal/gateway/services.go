package gateway

import (
	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/megaphone"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/pipe"
	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/relay"
)

// newServices builds every protocol the gateway serves.
func newServices(cfg *Config, pdeps protocol.Deps, relayNC *nats.Conn) []namedService {
	relayDeps := pdeps
	relayDeps.NC = relayNC
	return []namedService{
		{"megaphone", megaphone.New(cfg.Megaphone, pdeps)},
		{"pipe", pipe.New(cfg.Pipe, pdeps)},
		{"middleman", middleman.New(cfg.Middleman, pdeps)},
		{"relay", relay.New(cfg.Relay, relayDeps)},
	}
}
