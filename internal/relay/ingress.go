package relay

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Service is the gateway's HTTP relay ingress: it serves
// ANY /relay/{name}/{path...} and hands each request to a [Client].
type Service struct {
	deps    protocol.Deps
	client  *Client
	metrics *Metrics
	keys    map[string]string
	proxies *TrustedProxies
	log     *slog.Logger
}

var _ interface {
	Provision(context.Context) error
	Routes() []protocol.Route
	Close() error
} = (*Service)(nil)

// New builds the relay ingress. Zero fields of cfg mean their defaults;
// the forwarding headers of deps.HTTP.TrustedProxies are kept.
func New(cfg Config, deps protocol.Deps) *Service {
	log := deps.Logger.With("component", "relay")
	m := NewMetrics(deps.Registry)
	proxies, err := ParseTrustedProxies(deps.HTTP.TrustedProxies)
	if err != nil { // config validation refuses such lists; trust no one
		log.Error("ignoring http.trusted_proxies", "err", err)
	}
	return &Service{
		deps:    deps,
		metrics: m,
		keys:    cfg.APIKeys,
		proxies: proxies,
		log:     log,
		client:  NewClient(deps.NC, cfg, m, log),
	}
}

// Provision does nothing: the relay keeps no state in NATS.
func (s *Service) Provision(context.Context) error { return nil }

// Routes are /relay/{name} and /relay/{name}/{path...} for every method,
// extension methods included.
func (s *Service) Routes() []protocol.Route {
	h := http.HandlerFunc(s.handle)
	return []protocol.Route{
		{Path: "/relay/:name", Handler: h},
		{Path: "/relay/:name/*", Handler: h},
	}
}

// Close releases the relay client's reply subscriptions; open relays
// ended with their tracked streams before.
func (s *Service) Close() error {
	s.client.Close()
	return nil
}

// handle relays one request. The upstream name and path come from the
// escaped request path itself (see [SplitPath]), not from the router's
// parameters, so that the path reaches the upstream exactly as received.
func (s *Service) handle(w http.ResponseWriter, r *http.Request) {
	name, path, err := SplitPath(r.URL.EscapedPath())
	if err != nil {
		s.metrics.Result("bad_request")
		WriteError(w, err)
		return
	}
	if key, ok := s.keys[name]; ok {
		if !bearer(r, key) {
			s.metrics.Result(ResultUnauthorized)
			w.Header().Set("WWW-Authenticate", `Bearer realm="relay"`)
			WriteError(w, fmt.Errorf("%w: upstream %q requires its API key (Authorization: Bearer)", ErrUnauthorized, name))
			return
		}
		// The key was for the gateway; the upstream does not see it.
		r.Header.Del("Authorization")
	}
	// A relayed request is drained, not cut, on shutdown: the upstream may
	// already have acted on it (see protocol.Tracker.BeginDrain). An
	// upgraded connection is long-lived: it is closed last, once the
	// ordinary requests were answered (protocol.Tracker.BeginLast).
	begin, kind, parent := s.deps.Streams.BeginDrain, "relay", r.Context()
	if UpgradeProtocol(r) != "" {
		begin, kind = s.deps.Streams.BeginLast, "relay_upgrade"
		parent = WithShutdown(parent, s.deps.Streams.StoppingLast())
	}
	ctx, done, err := begin(parent, kind)
	if err != nil {
		WriteError(w, fmt.Errorf("shutting down: %w", err))
		return
	}
	defer done()
	// Forward keeps the forwarding headers of trusted proxies only.
	_ = s.client.forward(ctx, w, r, name, path, s.proxies)
}

// SplitPath splits an escaped request path /relay/{name}[/{path...}] into
// the unescaped upstream name and the escaped path relayed ("/" when
// empty), kept exactly as received.
func SplitPath(escaped string) (name, path string, err error) {
	rest, ok := strings.CutPrefix(escaped, "/relay/")
	if !ok {
		return "", "", fmt.Errorf("%w: path must start with /relay/", ErrBadRequest)
	}
	rawName, path, _ := strings.Cut(rest, "/")
	path = "/" + path
	name, err = url.PathUnescape(rawName)
	if err != nil || name == "" {
		return "", "", fmt.Errorf("%w: missing or malformed upstream name", ErrBadRequest)
	}
	if len(name) > subjects.MaxNameLen {
		return "", "", fmt.Errorf("%w: upstream name of %d bytes is longer than %d", ErrBadRequest, len(name), subjects.MaxNameLen)
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
