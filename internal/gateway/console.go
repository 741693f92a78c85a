package gateway

import (
	"context"
	"net"

	"github.com/switchboard/switchboard/internal/buildinfo"
	"github.com/switchboard/switchboard/internal/console"
	"github.com/switchboard/switchboard/internal/megaphone"
)

// withConsole appends the web console to services when ui.enabled is
// set. Its token is ui.token, else megaphone.admin_token; its channel
// listing comes from the Megaphone broker.
func (g *Gateway) withConsole(services []namedService) []namedService {
	if !g.cfg.UI.Enabled {
		return services
	}
	cfg := g.cfg.UI
	if cfg.Token == "" {
		cfg.Token = g.cfg.Megaphone.AdminToken
	}
	deps := console.Deps{
		NC: g.nc.Load(), JS: g.js, Logger: g.log, Gatherer: g.registry,
		Addr: g.Addr, Embedded: g.EmbeddedURL, Version: buildinfo.Version(),
	}
	for _, s := range services {
		if mp, ok := s.Protocol.(*megaphone.Service); ok {
			deps.Channels = func(ctx context.Context) ([]console.ChannelInfo, error) {
				list, err := mp.Broker().List(ctx)
				out := make([]console.ChannelInfo, len(list))
				for i, c := range list {
					out[i] = console.ChannelInfo{ConsumerAddress: c.ConsumerAddress, Buffered: c.Buffered}
				}
				return out, err
			}
		}
	}
	access := "bearer ui.token"
	if cfg.Token == "" {
		access = "this host only (no token configured)"
	}
	g.log.Info("web console", "url", consoleURL(g.Addr()), "access", access)
	return append(services, namedService{"console", console.New(cfg, deps)})
}

// consoleURL is the console's address for the log: a listener on every
// interface is shown as localhost.
func consoleURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "/ui/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/ui/"
}
