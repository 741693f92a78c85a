// Package embedded runs an in-process nats-server with JetStream, used by
// the gateway when no external NATS URL is configured.
package embedded

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/subjects"
)

// ErrNotReady is returned when the server does not accept clients in time.
var ErrNotReady = errors.New("embedded: nats-server not ready")

// Agent is one agent account: it may serve only its upstreams.
type Agent struct {
	User      string
	Password  string
	Upstreams []string
}

// Config configures the embedded server.
type Config struct {
	// Listen is host:port for clients; port 0 picks a random port; "-1" and
	// ":0" mean a random port on 127.0.0.1. An empty host with another port
	// listens on every interface.
	Listen string
	// StoreDir holds JetStream data.
	StoreDir string
	// Agents, when non-empty, turns on user/password auth.
	Agents []Agent
	// TLS turns on TLS (and optionally mTLS) on the client port.
	TLS TLS
	// Websocket turns on the server's NATS WebSocket transport on a random
	// loopback port, without TLS, for the gateway to proxy at its public
	// listener ([Server.WebsocketAddr]).
	Websocket bool
}

// Server is a running embedded nats-server.
type Server struct {
	ns        *server.Server
	user      string
	password  string
	relayUser string
	relayPass string
	websocket bool
}

// Start starts the server and waits until it accepts clients.
func Start(cfg Config, logger *slog.Logger) (*Server, error) {
	host, port, err := splitListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: "switchboard-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		MaxPayload: 1 << 20,
	}
	if err := cfg.TLS.apply(opts); err != nil {
		return nil, err
	}
	if cfg.Websocket {
		opts.Websocket = server.WebsocketOpts{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoTLS: true}
	}
	// The gateway connects as a full user, its relay as a user confined to
	// the relay's subjects. Without agents, clients without credentials
	// (agents in development) get full access, as before, through a
	// no-auth user; with agents, every client must authenticate.
	s := &Server{
		user: "switchboard-gateway", password: randomSecret(),
		relayUser: "switchboard-relay", relayPass: randomSecret(), websocket: cfg.Websocket,
	}
	rp := subjects.RelayCallerPermissions()
	opts.Users = []*server.User{
		{Username: s.user, Password: s.password},
		{Username: s.relayUser, Password: s.relayPass, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: rp.Publish},
			Subscribe: &server.SubjectPermission{Allow: rp.Subscribe},
		}},
	}
	if len(cfg.Agents) == 0 {
		opts.Users = append(opts.Users, &server.User{Username: anonymousUser, Password: randomSecret()})
		opts.NoAuthUser = anonymousUser
	}
	for _, a := range cfg.Agents {
		p := subjects.AgentPermissions(a.Upstreams)
		perms := &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: p.Publish},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
		}
		if p.AllowResponses {
			perms.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
		}
		opts.Users = append(opts.Users, &server.User{Username: a.User, Password: a.Password, Permissions: perms})
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	ns.SetLoggerV2(&slogAdapter{logger.With("component", "nats-server")}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, ErrNotReady
	}
	s.ns = ns
	logger.Info("embedded nats listening", "url", ns.ClientURL(), "store", cfg.StoreDir)
	return s, nil
}

// ClientURL is the URL agents use to connect: tls:// when the client port
// requires TLS.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// WebsocketAddr is the host:port of the loopback NATS WebSocket listener,
// or "" when Config.Websocket is off.
func (s *Server) WebsocketAddr() string {
	if !s.websocket {
		return ""
	}
	return strings.TrimPrefix(s.ns.WebsocketURL(), "ws://")
}

// anonymousUser is the user clients without credentials are when no
// agents are configured.
const anonymousUser = "anonymous"

// ConnectOptions returns the options for the gateway's in-process client
// connection (full access).
func (s *Server) ConnectOptions() []nats.Option {
	return []nats.Option{nats.InProcessServer(s.ns), nats.UserInfo(s.user, s.password), noFlusherTimeout}
}

// RelayConnectOptions returns the options for the gateway's in-process
// relay connection, confined to the relay's subjects
// (subjects.RelayCallerPermissions).
func (s *Server) RelayConnectOptions() []nats.Option {
	return []nats.Option{nats.InProcessServer(s.ns), nats.UserInfo(s.relayUser, s.relayPass), noFlusherTimeout}
}

// noFlusherTimeout: an in-process connection writes to a net.Pipe with no
// write deadline. nats.go's default (a minute) sets a deadline before and
// clears it after every flush, and a deadline on a net.Pipe is a timer
// (time.AfterFunc) made and stopped each time: under a stream of
// Megaphone events that was ~1 % of the gateway's CPU and 1.4 % of its
// allocations. The deadline guards against a peer that stops reading; the
// peer here is the server in the same process, whose shutdown closes the
// pipe and so ends a blocked write anyway.
var noFlusherTimeout = nats.FlusherTimeout(0)

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

func splitListen(listen string) (string, int, error) {
	if listen == "-1" {
		return "127.0.0.1", server.RANDOM_PORT, nil
	}
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("embedded: listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("embedded: listen %q: bad port", listen)
	}
	if host == "" && port == 0 {
		// ":0" is the documented synonym of "-1": a random port on
		// loopback, not on every interface.
		host = "127.0.0.1"
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type slogAdapter struct{ l *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
