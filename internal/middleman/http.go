package middleman

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/switchboard/switchboard/internal/httpx"
)

// Route is where the middleman WebSocket is mounted.
const Route = "/mm"

// upgrade turns GET /mm into a Session. It checks the Origin, registers
// the connection with the stream tracker (shutdown closes it with 1001,
// which http.Server.Shutdown would not do for a hijacked connection),
// upgrades, and hands the connection to the hub, so that net/http's
// per-request buffers are released for the connection's life.
func (s *Service) upgrade(w http.ResponseWriter, r *http.Request) {
	if !s.origins.allows(r) {
		status, code := HTTPError(ErrOrigin)
		httpx.WriteError(w, status, code, "Origin "+r.Header.Get("Origin")+" is not allowed")
		return
	}
	ctx, done, err := s.deps.Streams.Begin(context.Background(), "websocket")
	if err != nil {
		status, code := HTTPError(err)
		httpx.WriteError(w, status, code, "gateway is shutting down")
		return
	}
	conn, err := acceptWS(w, r)
	if err != nil {
		done()
		return // acceptWS answered the client
	}
	s.hub.Start(ctx, newWSConn(conn, s.poller), func(err error) {
		done()
		s.log.Debug("middleman connection ended", "err", err)
	})
}

// prefixConn reads early (bytes read ahead) before the conn.
type prefixConn struct {
	net.Conn
	early []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.early) == 0 {
		return c.Conn.Read(p)
	}
	n := copy(p, c.early)
	c.early = c.early[n:]
	if len(c.early) == 0 {
		c.early = nil
	}
	return n, nil
}

// originPolicy decides which browser Origins may open /mm: none given
// (non-browser clients), the gateway's own host, and the configured list
// ("*" = any; "https://app.example" matches scheme and host; anything else
// is a host pattern such as "app.example:8443" or "*.example").
type originPolicy struct {
	any     bool
	allowed []string
}

func newOriginPolicy(list []string) originPolicy {
	var p originPolicy
	for _, o := range list {
		o = strings.ToLower(strings.TrimSpace(o))
		switch o {
		case "":
		case "*":
			p.any = true
		default:
			p.allowed = append(p.allowed, strings.TrimSuffix(o, "/"))
		}
	}
	return p
}

func (p originPolicy) allows(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || p.any {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Host)
	if host == strings.ToLower(r.Host) {
		return true
	}
	for _, a := range p.allowed {
		if strings.Contains(a, "://") {
			if a == strings.ToLower(u.Scheme)+"://"+host {
				return true
			}
			continue
		}
		if ok, _ := path.Match(a, host); ok {
			return true
		}
	}
	return false
}
