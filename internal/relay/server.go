package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/subjects"
)

// ServiceVersion is the micro service version agents announce; it
// versions the relay wire protocol.
const ServiceVersion = "1.0.0"

// ServerConfig configures the serving side of one upstream.
type ServerConfig struct {
	// Upstream is the name served.
	Upstream string
	// Target is the base URL requests go to; the relayed path is appended
	// to its path.
	Target string
	// MaxConcurrent bounds the requests served at once; more are answered
	// "busy" and the caller asks another agent. Default
	// [DefaultMaxConcurrent]; 0 = the default.
	MaxConcurrent int
	// MaxUpgraded bounds the upgraded connections (101) open at once,
	// apart from MaxConcurrent; more upgrade requests are answered "busy".
	// Default [DefaultMaxUpgraded]; 0 = the default.
	MaxUpgraded int
	// Transport calls the target. Default: a clone of
	// http.DefaultTransport without transparent compression.
	Transport http.RoundTripper
	// Metadata is announced in the micro service info.
	Metadata map[string]string
	// Logger receives debug, info and warning logs; nil discards them.
	Logger *slog.Logger
	// Config times the exchanges (Heartbeat, PeerTimeout, InlineMax,
	// Window); its caller-only fields are ignored.
	Config
}

// AgentStats is the custom data of an agent's $SRV.STATS reply.
type AgentStats struct {
	// InFlight is the number of requests the agent is serving.
	InFlight int `json:"in_flight"`
}

// Server serves one upstream on a NATS connection: a micro service whose
// endpoint accepts open requests in a queue group, and the agent side of
// every exchange. Create it with [NewServer]; stop it with
// [Server.Shutdown].
type Server struct {
	nc        *nats.Conn
	cfg       ServerConfig
	log       *slog.Logger
	target    *url.URL
	transport http.RoundTripper
	lean      *leanClient // nil: every request goes through transport
	prefix    string
	chunk     int // of the body streams it sends (chunkFor)
	ctlSpace  string
	svc       micro.Service
	ctlSub    *nats.Subscription
	cancelSub *nats.Subscription
	hardCtx   context.Context
	hardStop  context.CancelFunc
	stopSweep chan struct{}
	sweepDone chan struct{}
	wg        sync.WaitGroup
	// Upgraded connections: their own count, wait group and context,
	// which Shutdown cancels after the ordinary requests drained.
	uwg    sync.WaitGroup
	upCtx  context.Context
	upStop context.CancelFunc
	// dial connects to the target: the one dialer of the default
	// transport (wrapped in bulkConn), the lean client (raw, which its
	// liveness peek needs) and upgrades without a custom transport dialer.
	dial dialFunc
	// Exchanges run on worker goroutines that stay for the next one
	// (work hands an exchange to an idle worker), sparing each request a
	// goroutine start and the growth of its stack.
	work    chan *exchange
	idle    atomic.Int32
	workers sync.WaitGroup

	drainOnce sync.Once
	drainErr  error
	shutOnce  sync.Once

	mu        sync.Mutex
	closing   bool
	exchanges map[string]*exchange
	byReply   map[string]*exchange
	nextID    uint64
	upgrades  int
}

// The dialer of every connection to the target: http.DefaultTransport's
// settings.
const (
	targetDialTimeout = 30 * time.Second
	targetKeepAlive   = 30 * time.Second
)

// dialFunc dials a network address, as net.Dialer.DialContext.
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// targetAddr is the host:port of target, the scheme's port when it names
// none.
func targetAddr(target *url.URL) string {
	port := target.Port()
	if port == "" {
		port = "80"
		if target.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(target.Hostname(), port)
}

// NewServer starts serving cfg.Upstream on nc.
func NewServer(nc *nats.Conn, cfg ServerConfig) (*Server, error) {
	target, err := url.Parse(cfg.Target)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return nil, fmt.Errorf("relay: target %q is not an http(s) URL", cfg.Target)
	}
	open, err := subjects.RelayRequest(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("relay: upstream %q: %w", cfg.Upstream, err)
	}
	name, _ := subjects.RelayService(cfg.Upstream)
	prefix, _ := subjects.RelayInbox(cfg.Upstream)
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	if cfg.MaxUpgraded <= 0 {
		cfg.MaxUpgraded = DefaultMaxUpgraded
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Config = cfg.Config.withDefaults()
	s := &Server{
		nc: nc, cfg: cfg, target: target, transport: cfg.Transport, chunk: chunkFor(nc),
		prefix: prefix, exchanges: map[string]*exchange{}, byReply: map[string]*exchange{},
		stopSweep: make(chan struct{}), sweepDone: make(chan struct{}),
		work: make(chan *exchange),
	}
	s.log = cfg.Logger.With("upstream", cfg.Upstream)
	s.dial = (&net.Dialer{Timeout: targetDialTimeout, KeepAlive: targetKeepAlive}).DialContext
	if s.transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DisableCompression = true
		t.MaxIdleConnsPerHost = cfg.MaxConcurrent
		t.DialContext = bulkDial(s.dial)
		s.transport = t
		s.lean = newLeanClient(target, s.dial, cfg.MaxConcurrent, nc.MaxPayload())
	}
	s.hardCtx, s.hardStop = context.WithCancel(context.Background())
	s.upCtx, s.upStop = context.WithCancel(s.hardCtx)
	s.ctlSpace = subjects.RelayExchangeSpace(prefix, strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix))
	if s.ctlSub, err = nc.Subscribe(subjects.RelayExchangeAll(s.ctlSpace), s.control); err != nil {
		s.hardStop()
		return nil, fmt.Errorf("relay: subscribe control: %w", err)
	}
	cancelSubj, _ := subjects.RelayCancel(cfg.Upstream)
	if s.cancelSub, err = nc.Subscribe(cancelSubj, s.cancelByReply); err != nil {
		_ = s.ctlSub.Unsubscribe()
		s.hardStop()
		return nil, fmt.Errorf("relay: subscribe cancel: %w", err)
	}
	meta := map[string]string{"upstream": cfg.Upstream}
	for k, v := range cfg.Metadata {
		meta[k] = v
	}
	s.svc, err = micro.AddService(nc, micro.Config{
		Name:        name,
		Version:     ServiceVersion,
		Description: "Switchboard relay agent",
		Metadata:    meta,
		// The console shows each agent's requests in flight from $SRV.STATS.
		StatsHandler: func(*micro.Endpoint) any { return AgentStats{InFlight: s.InFlight()} },
		Endpoint: &micro.EndpointConfig{
			Subject:    open,
			Handler:    micro.HandlerFunc(s.handle),
			QueueGroup: subjects.RelayQueue,
		},
	})
	if err != nil {
		_ = s.ctlSub.Unsubscribe()
		_ = s.cancelSub.Unsubscribe()
		s.hardStop()
		return nil, fmt.Errorf("relay: micro service: %w", err)
	}
	// Subscriptions the server refuses (NATS permissions) come back
	// asynchronously; wait for them so an agent not allowed to serve the
	// upstream fails to start instead of silently serving nothing.
	if err := nc.FlushTimeout(10 * time.Second); err == nil {
		if last := nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) {
			_ = s.svc.Stop()
			_ = s.ctlSub.Unsubscribe()
			_ = s.cancelSub.Unsubscribe()
			s.hardStop()
			return nil, fmt.Errorf("relay: not allowed to serve upstream %q: %w", cfg.Upstream, last)
		}
	}
	go s.sweep()
	return s, nil
}

// Upstream is the name served.
func (s *Server) Upstream() string { return s.cfg.Upstream }

// Upgraded is the number of upgraded connections open or being set up.
func (s *Server) Upgraded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upgrades
}

// InFlight is the number of requests being served, upgraded connections
// included.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.exchanges)
}

// Drain stops taking requests, upgrades included (the service leaves the
// queue group; open requests still arriving are answered "busy" so
// callers ask another agent), and waits for the ordinary requests in
// flight until ctx ends, then cancels everything, upgraded connections
// included. Upgraded connections otherwise stay open until Shutdown. It
// returns ctx's error if it had to cancel any; it is idempotent.
func (s *Server) Drain(ctx context.Context) error {
	s.drainOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		if err := s.svc.Stop(); err != nil {
			s.log.Debug("micro stop", "err", err)
		}
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.drainErr = ctx.Err()
			s.log.Warn("shutdown grace over, cancelling requests in flight", "in_flight", s.InFlight())
			s.hardStop()
			<-done
		}
	})
	return s.drainErr
}

// Shutdown drains (see [Server.Drain]), then closes the upgraded
// connections, last. It returns ctx's error if it had to cancel ordinary
// requests; a second call returns nil at once.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.shutOnce.Do(func() { err = s.shutdown(ctx) })
	return err
}

func (s *Server) shutdown(ctx context.Context) error {
	err := s.Drain(ctx)
	// Upgraded connections are long-lived: they are closed last, once
	// the ordinary requests drained.
	s.upStop()
	s.uwg.Wait()
	s.hardStop()
	if t, ok := s.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	if s.lean != nil {
		s.lean.closeIdle(true)
	}
	close(s.stopSweep)
	<-s.sweepDone
	s.workers.Wait()
	_ = s.ctlSub.Unsubscribe()
	_ = s.cancelSub.Unsubscribe()
	return err
}

// handle accepts an open request. It runs on the endpoint's subscription
// goroutine, so the exchange itself runs on its own.
func (s *Server) handle(req micro.Request) {
	m := &nats.Msg{Subject: req.Subject(), Reply: req.Reply(), Header: nats.Header(req.Headers()), Data: req.Data()}
	if m.Reply == "" {
		return
	}
	try := m.Header.Get(hdrTry)
	head, inline, err := decodeReq(m.Data)
	if err == nil && (m.Header.Get(hdrOp) != opOpen || head.Method == "" || !strings.HasPrefix(head.Path, "/")) {
		err = fmt.Errorf("%w: not an open request", ErrBadRequest)
	}
	if err != nil {
		s.reply(m.Reply, try, opErr, "BAD_REQUEST", err.Error())
		return
	}
	streamed := m.Header.Get(hdrBody) == bodyStream
	upgrade := m.Header.Get(hdrUpgrade)
	trailers, err := parseDeclared(m.Header.Get(hdrTrailers))
	if err != nil || (trailers != nil && !streamed) {
		s.reply(m.Reply, try, opErr, "BAD_REQUEST", "malformed trailer declaration")
		return
	}
	if !streamed && head.Length != int64(len(inline)) {
		// A body sent whole must be what its length says: the target
		// would wait for the rest, or read the excess as a request.
		s.reply(m.Reply, try, opErr, "BAD_REQUEST", "request body does not match its length")
		return
	}
	if upgrade != "" && (!validUpgrade(upgrade) || streamed || len(inline) > 0) {
		s.reply(m.Reply, try, opErr, "BAD_REQUEST", "malformed upgrade request")
		return
	}
	s.mu.Lock()
	busy := len(s.exchanges)-s.upgrades >= s.cfg.MaxConcurrent
	if upgrade != "" {
		busy = s.upgrades >= s.cfg.MaxUpgraded
	}
	if s.closing || busy {
		s.mu.Unlock()
		s.reply(m.Reply, try, opBusy, "", "")
		return
	}
	s.nextID++
	parent, wg := s.hardCtx, &s.wg
	if upgrade != "" {
		parent, wg = s.upCtx, &s.uwg
		s.upgrades++
	}
	x := s.newExchange(parent, strconv.FormatUint(s.nextID, 10), m.Reply, try, head, inline, streamed)
	x.upgrade, x.trailers = upgrade, trailers
	x.ackDelay = ackDelay(m.Header.Get(hdrAck))
	s.exchanges[x.id] = x
	s.byReply[x.reply] = x
	wg.Add(1)
	s.mu.Unlock()
	s.start(x)
}

// maxIdleWorkers bounds the worker goroutines kept waiting for exchanges.
const maxIdleWorkers = 64

// start runs x on an idle worker, or on a new one.
func (s *Server) start(x *exchange) {
	select {
	case s.work <- x:
	default:
		s.workers.Add(1)
		go s.worker(x)
	}
}

// worker runs exchanges until no more are waiting and enough workers are
// idle, or the server stopped.
func (s *Server) worker(x *exchange) {
	defer s.workers.Done()
	for {
		x.run()
		if s.idle.Add(1) > maxIdleWorkers {
			s.idle.Add(-1)
			return
		}
		select {
		case x = <-s.work:
			s.idle.Add(-1)
		case <-s.stopSweep:
			s.idle.Add(-1)
			return
		}
	}
}

func (s *Server) reply(subject, try, op, code, msg string) {
	r := newMsg(subject, op)
	r.Header.Set(hdrTry, try)
	if code != "" {
		r.Header.Set(hdrCode, code)
	}
	r.Data = []byte(msg)
	_ = s.nc.PublishMsg(r)
}

// finish forgets a finished exchange.
func (s *Server) finish(x *exchange) {
	s.mu.Lock()
	delete(s.exchanges, x.id)
	if s.byReply[x.reply] == x {
		delete(s.byReply, x.reply)
	}
	if x.upgrade != "" {
		s.upgrades--
	}
	s.mu.Unlock()
	if x.upgrade != "" {
		s.uwg.Done()
	} else {
		s.wg.Done()
	}
}

func (s *Server) lookup(id string) *exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges[id]
}

// control dispatches the caller's control messages to their exchange.
func (s *Server) control(m *nats.Msg) {
	id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	x := s.lookup(id)
	if x == nil {
		return
	}
	x.heard()
	switch m.Header.Get(hdrOp) {
	case opCancel:
		x.cancel(errCanceledByCaller)
	case opPull:
		select {
		case x.pull <- m.Header.Get(hdrBody):
		default:
		}
	}
}

// ackDelay is how long an agent may hold back the ack of an inline request
// hoping to answer with the response itself (one message less): a quarter
// of the caller's ack timeout, at most 50 ms.
func ackDelay(callerMs string) time.Duration {
	ms, err := strconv.Atoi(callerMs)
	if err != nil || ms <= 0 {
		return 0
	}
	return min(time.Duration(ms)*time.Millisecond/4, 50*time.Millisecond)
}

// cancelByReply handles a caller's broadcast that it gave up before any
// agent accepted: the agent holding its request (if this one) stops.
func (s *Server) cancelByReply(m *nats.Msg) {
	s.mu.Lock()
	x := s.byReply[m.Header.Get(hdrRepl)]
	s.mu.Unlock()
	if x != nil {
		x.cancel(errCanceledByCaller)
	}
}

var errCanceledByCaller = errors.New("relay: canceled by caller")

// sweep sends keep-alives for exchanges waiting on the target and
// cancels those whose caller went silent.
func (s *Server) sweep() {
	defer close(s.sweepDone)
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.stopSweep:
			return
		case <-t.C:
		}
		if s.lean != nil {
			s.lean.closeExpired(time.Now())
		}
		s.mu.Lock()
		waiting := make([]*exchange, 0, len(s.exchanges))
		for _, x := range s.exchanges {
			if x.waiting.Load() {
				waiting = append(waiting, x)
			}
		}
		s.mu.Unlock()
		for _, x := range waiting {
			if time.Since(x.lastHeard()) > s.cfg.PeerTimeout {
				s.log.Info("caller lost, cancelling request", "path", x.head.Path)
				x.cancel(errCallerLost)
				continue
			}
			x.send(x.msg(opKA))
		}
	}
}

// stream returns the natsio options of this agent's body streams. The
// caller's subjects are taken as literal subjects anywhere: a caller's
// hello replies come from its own connection's inbox, and what an agent
// may publish to is confined by its NATS permissions, not by this check.
func (s *Server) stream() natsio.Options {
	return s.cfg.stream(s.prefix, s.chunk, func(subj string) error { return subjects.CheckPeer(subj, "") })
}
