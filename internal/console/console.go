package console

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

//go:embed static
var static embed.FS

// ChannelInfo is one live Megaphone channel as the console lists it.
type ChannelInfo struct {
	ConsumerAddress string `json:"consumerAddress"`
	Buffered        uint64 `json:"buffered"`
}

// Deps is what the gateway hands the console.
type Deps struct {
	// NC is the gateway's NATS connection; JS is JetStream on it.
	NC *nats.Conn
	JS jetstream.JetStream
	// Logger is scoped with component=console.
	Logger *slog.Logger
	// Gatherer is the gateway's metrics registry, read for the status and
	// the traffic rates.
	Gatherer prometheus.Gatherer
	// Addr is the bound address of the gateway's listener.
	Addr func() string
	// Embedded, when non-nil, returns the client URL of the gateway's
	// embedded nats-server ("" when it has none): an in-process
	// connection's own URL says nothing about where agents connect.
	Embedded func() string
	// Version is the gateway's version.
	Version string
	// Channels lists the live Megaphone channels; nil = not available.
	Channels func(ctx context.Context) ([]ChannelInfo, error)
}

// Service is the console of one gateway. Create it with [New].
type Service struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	id      string
	started time.Time
	peers   *peers
	traffic history

	mu   sync.Mutex
	sub  *nats.Subscription
	stop chan struct{}
	done chan struct{}
}

// New returns the console of a gateway; cfg.Token is the bearer token
// (already resolved from megaphone.admin_token by the caller).
func New(cfg Config, deps Deps) *Service {
	if cfg.Interval <= 0 {
		cfg.Interval = defaultInterval
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Gatherer == nil {
		deps.Gatherer = prometheus.NewRegistry()
	}
	return &Service{
		cfg: cfg, deps: deps, log: deps.Logger.With("component", "console"),
		id: nuid.Next(), started: time.Now(), peers: newPeers(3 * cfg.Interval),
	}
}

// ID is the gateway id the console announces.
func (s *Service) ID() string { return s.id }

// Provision subscribes to the cluster's status messages and starts
// publishing this gateway's.
func (s *Service) Provision(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sub != nil {
		return nil
	}
	sub, err := s.deps.NC.Subscribe(subjects.ConsoleStatus(), s.receive)
	if err != nil {
		return fmt.Errorf("console: subscribe status: %w", err)
	}
	s.sub = sub
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go s.run()
	return nil
}

func (s *Service) receive(m *nats.Msg) {
	st, err := decodeStatus(m.Data)
	if err != nil {
		s.log.Debug("status dropped", "err", err)
		return
	}
	s.peers.update(st, time.Now())
}

// run publishes the status and samples the cluster's traffic every
// interval.
func (s *Service) run() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	var r rater
	s.publish(s.status(read(s.deps.Gatherer)))
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.publish(s.status(read(s.deps.Gatherer)))
			s.traffic.add(now.UnixMilli(), r.rates(s.peers.list(now), now))
		}
	}
}

func (s *Service) status(m sample) Status {
	st := Status{
		ID: s.id, Version: s.deps.Version, Started: s.started.UnixMilli(),
		Polls: int64(m.polls), Waiting: int64(m.waiting), Transfer: int64(max(m.pipes-m.waiting, 0)),
		MMConns: int64(m.mmConns), Relayed: int64(m.relayOpen), Totals: m.totals(),
	}
	if s.deps.Addr != nil {
		st.Listen = s.deps.Addr()
	}
	st.NATS = s.serverURL()
	return st
}

// serverURL is the NATS server the gateway is connected to, credentials
// removed, or "" while disconnected.
func (s *Service) serverURL() string {
	if !s.deps.NC.IsConnected() {
		return ""
	}
	if s.deps.Embedded != nil {
		if u := s.deps.Embedded(); u != "" {
			return u + " (embedded)"
		}
	}
	return s.deps.NC.ConnectedUrlRedacted()
}

func (s *Service) publish(st Status) {
	raw, err := json.Marshal(st)
	if err != nil {
		return
	}
	// Our own status also goes through receive, so a gateway lists itself
	// exactly as the others list it.
	if err := s.deps.NC.Publish(subjects.ConsoleStatus(), raw); err != nil {
		s.log.Debug("status not published", "err", err)
	}
}

// Routes are the console's routes: the page under /ui/ and its JSON under
// /admin/api/.
func (s *Service) Routes() []protocol.Route {
	sub, _ := fs.Sub(static, "static")
	files := http.StripPrefix("/ui/", http.FileServer(http.FS(sub)))
	page := s.local(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'")
		files.ServeHTTP(w, r)
	}))
	return []protocol.Route{
		{Method: http.MethodGet, Path: "/ui", Handler: http.RedirectHandler("/ui/", http.StatusMovedPermanently)},
		{Method: http.MethodGet, Path: "/ui/*", Handler: page},
		{Method: http.MethodGet, Path: "/admin/api/auth", Handler: http.HandlerFunc(s.authHandler)},
		{Method: http.MethodGet, Path: "/admin/api/cluster", Handler: s.api(s.cluster)},
		{Method: http.MethodGet, Path: "/admin/api/nats", Handler: s.api(s.natsInfo)},
		{Method: http.MethodGet, Path: "/admin/api/relay", Handler: s.api(s.relay)},
		{Method: http.MethodGet, Path: "/admin/api/traffic", Handler: s.api(s.trafficInfo)},
		{Method: http.MethodGet, Path: "/admin/api/channels", Handler: s.api(s.channels)},
	}
}

// Close announces that this gateway leaves and stops publishing.
func (s *Service) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sub == nil {
		return nil
	}
	close(s.stop)
	<-s.done
	_ = s.sub.Unsubscribe()
	s.sub = nil
	s.publish(Status{ID: s.id, Leaving: true})
	return nil
}
