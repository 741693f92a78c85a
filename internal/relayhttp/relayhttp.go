// Package relayhttp is the gateway's HTTP relay ingress: it mounts
// ANY /relay/{name}/{path...} on echo and hands each request to a
// relay.Client. The protocol itself lives in internal/relay, which stays
// free of echo so the agent binary does not link it.
package relayhttp

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchboard/switchboard/internal/relay"
	"github.com/switchboard/switchboard/internal/service"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Service is the relay ingress.
type Service struct {
	deps    service.Deps
	client  *relay.Client
	metrics *relay.Metrics
	keys    map[string]string
	proxies *relay.TrustedProxies
	log     *slog.Logger
}

var _ service.Service = (*Service)(nil)

// extraMethods are routed besides echo's standard ones, so WebDAV and
// cache-purge style upstreams work through the relay.
var extraMethods = []string{"PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "PURGE", "LINK", "UNLINK", "QUERY"}

// New builds the relay ingress from the gateway's relay configuration.
func New(deps service.Deps) *Service {
	log := deps.Logger.With("component", "relay")
	rc := deps.Config.Relay
	m := relay.NewMetrics(deps.Registry)
	proxies, err := relay.ParseTrustedProxies(deps.Config.HTTP.TrustedProxies)
	if err != nil { // config.Validate refuses such lists; trust no one
		log.Error("ignoring http.trusted_proxies", "err", err)
	}
	return &Service{
		deps:    deps,
		metrics: m,
		keys:    rc.APIKeys,
		proxies: proxies,
		log:     log,
		client: relay.NewClient(deps.NC, relay.Options{
			AgentWait:       rc.AgentWait,
			AckTimeout:      rc.AckTimeout,
			ResponseTimeout: rc.ResponseTimeout,
			Logger:          log,
		}, m),
	}
}

// Provision does nothing: the relay keeps no state in NATS.
func (s *Service) Provision(context.Context) error { return nil }

// Mount registers /relay/{name} and /relay/{name}/{path...} for every method.
func (s *Service) Mount(e *echo.Echo) {
	for _, p := range []string{"/relay/:name", "/relay/:name/*"} {
		e.Any(p, s.handle)
		e.Match(extraMethods, p, s.handle)
	}
}

// Close releases the relay client's reply subscriptions; open relays
// ended with their tracked streams before.
func (s *Service) Close() error {
	s.client.Close()
	return nil
}

func (s *Service) handle(c echo.Context) error {
	r, w := c.Request(), c.Response()
	name, path, err := SplitPath(r.URL.EscapedPath())
	if err != nil {
		s.metrics.Result("bad_request")
		relay.WriteError(w, err)
		return nil
	}
	if key, ok := s.keys[name]; ok {
		if !bearer(r, key) {
			s.metrics.Result(relay.ResultUnauthorized)
			w.Header().Set("WWW-Authenticate", `Bearer realm="relay"`)
			relay.WriteError(w, fmt.Errorf("%w: upstream %q requires its API key (Authorization: Bearer)", relay.ErrUnauthorized, name))
			return nil
		}
		// The key was for the gateway; the upstream does not see it.
		r.Header.Del("Authorization")
	}
	// A relayed request is drained, not cut, on shutdown: the upstream may
	// already have acted on it (see service.Tracker.BeginDrain).
	ctx, done, err := s.deps.Streams.BeginDrain(r.Context(), "relay")
	if err != nil {
		relay.WriteError(w, fmt.Errorf("%w: %v", relay.ErrShuttingDown, err))
		return nil
	}
	defer done()
	// Forward keeps the forwarding headers of trusted proxies only.
	r = r.WithContext(relay.WithTrustedProxies(r.Context(), s.proxies))
	_ = s.client.Forward(ctx, w, r, name, path)
	return nil
}

// SplitPath splits an escaped request path /relay/{name}[/{path...}] into
// the unescaped upstream name and the escaped path relayed ("/" when
// empty), kept exactly as received.
func SplitPath(escaped string) (name, path string, err error) {
	rest, ok := strings.CutPrefix(escaped, "/relay/")
	if !ok {
		return "", "", fmt.Errorf("%w: path must start with /relay/", relay.ErrBadRequest)
	}
	rawName, path, _ := strings.Cut(rest, "/")
	path = "/" + path
	name, err = url.PathUnescape(rawName)
	if err != nil || name == "" {
		return "", "", fmt.Errorf("%w: missing or malformed upstream name", relay.ErrBadRequest)
	}
	if len(name) > subjects.MaxNameLen {
		return "", "", fmt.Errorf("%w: upstream name of %d bytes is longer than %d", relay.ErrBadRequest, len(name), subjects.MaxNameLen)
	}
	return name, path, nil
}

// bearer reports whether r carries Authorization: Bearer key.
func bearer(r *http.Request, key string) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(key)) == 1
}
