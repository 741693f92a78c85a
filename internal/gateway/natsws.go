package gateway

import (
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/switchboard/switchboard/internal/httpx"
)

// NATSWebsocketPath is where the public listener serves the embedded
// server's NATS WebSocket transport (embedded.websocket): agents on
// networks that allow only outbound HTTPS dial wss://host/nats.
const NATSWebsocketPath = "/nats"

// mountNATSWebsocket proxies NATSWebsocketPath to the embedded server's
// loopback WebSocket listener. Only upgrade requests pass; the agents'
// NATS credentials and permissions apply as on the client port.
func (g *Gateway) mountNATSWebsocket(e *echo.Echo) {
	es := g.embeddedServer()
	if !g.cfg.Embedded.Websocket || es == nil || es.WebsocketAddr() == "" {
		return
	}
	target := &url.URL{Scheme: "http", Host: es.WebsocketAddr()}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.URL.Path = "/"
			r.Out.Host = target.Host
			// The NATS server checks no Origin (agents are not browsers);
			// drop it so a browser page cannot ride on it either.
			r.Out.Header.Del("Origin")
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			g.log.Warn("nats websocket proxy", "err", err)
			httpx.WriteError(w, http.StatusBadGateway, "NATS_UNREACHABLE", "the embedded NATS server did not answer")
		},
	}
	e.GET(NATSWebsocketPath, func(c echo.Context) error {
		r := c.Request()
		if r.Header.Get("Upgrade") == "" || r.Header.Get("Origin") != "" {
			httpx.WriteError(c.Response(), http.StatusBadRequest, httpx.CodeBadRequest,
				"the NATS WebSocket transport needs a WebSocket upgrade from a NATS client (no browser Origin)")
			return nil
		}
		proxy.ServeHTTP(c.Response(), r)
		return nil
	})
}
