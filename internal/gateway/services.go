package gateway

import (
	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/megaphone"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/pipe"
	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/relay"
)

// newServices builds every protocol the gateway serves.
func newServices(cfg *config.Gateway, pdeps protocol.Deps) []namedService {
	return []namedService{
		{"megaphone", megaphone.New(megaphoneConfig(cfg), pdeps)},
		{"pipe", pipe.New(pipeConfig(cfg), pdeps)},
		{"middleman", middleman.New(middlemanConfig(cfg), pdeps)},
		{"relay", relay.New(relayConfig(cfg), pdeps)},
	}
}

// middlemanConfig copies the middleman section of the gateway's
// configuration (transitional, until the gateway's Config holds a
// middleman.Config).
func middlemanConfig(cfg *config.Gateway) middleman.Config {
	c := cfg.Middleman
	return middleman.Config{
		ServiceKeys: c.ServiceKeys, ClientKeys: c.ClientKeys, SuperKeys: c.SuperKeys,
		RequestTimeout: c.RequestTimeout, MaxFrame: c.MaxFrame, AllowedOrigins: c.AllowedOrigins,
	}
}

// megaphoneConfig copies the megaphone section of the gateway's
// configuration (transitional, until the gateway's Config holds a
// megaphone.Config).
func megaphoneConfig(cfg *config.Gateway) megaphone.Config {
	c := cfg.Megaphone
	return megaphone.Config{
		Agent: c.Agent, BufferSize: c.BufferSize, WriteWait: c.WriteWait, PollDuration: c.PollDuration,
		ChannelTTL: c.ChannelTTL, AdminToken: c.AdminToken, WebhookURL: c.WebhookURL,
	}
}

// pipeConfig copies the pipe section of the gateway's configuration
// (transitional, until the gateway's Config holds a pipe.Config).
func pipeConfig(cfg *config.Gateway) pipe.Config {
	return pipe.Config{Timeout: cfg.Pipe.Timeout}
}

// relayConfig copies the relay section of the gateway's configuration
// (transitional, until the gateway's Config holds a relay.Config).
func relayConfig(cfg *config.Gateway) relay.Config {
	c := cfg.Relay
	return relay.Config{
		AgentWait: c.AgentWait, AckTimeout: c.AckTimeout, ResponseTimeout: c.ResponseTimeout, APIKeys: c.APIKeys,
	}
}
