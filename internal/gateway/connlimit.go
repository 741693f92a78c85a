package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Every open client connection holds a file descriptor, and so do the
// gateway's NATS connection, the embedded server's store files and the
// agents' connections to it. A client that opens connections until the
// process runs out of descriptors would make the gateway's own
// reconnects and store files fail, so the public listener holds at most
// http.max_conns client connections, hijacked ones (Megaphone polls,
// WebSockets, relayed upgrades) included, and turns the next away.

// minFDReserve is the least part of the file limit kept for everything
// that is not a client connection (a tenth of it otherwise).
const minFDReserve = 256

// connCap is the cap http.max_conns asks for: n itself when positive, no
// cap (0) when -1, and derived from the process's file limit when 0.
func connCap(n int) int {
	if n != 0 {
		return max(n, 0)
	}
	limit := fileLimit()
	if limit <= 0 {
		return 0
	}
	return capFromFileLimit(limit)
}

// capFromFileLimit is the connection cap a file limit leaves room for.
func capFromFileLimit(limit int) int {
	return max(limit-max(limit/10, minFDReserve), 1)
}

// busyReply is what a plain-HTTP client gets when the cap is reached: the
// load balancer or client can retry another gateway.
var busyReply = func() []byte {
	body := `{"error":"UNAVAILABLE","message":"the gateway holds its maximum of connections (http.max_conns)"}`
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
		"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

// capListener counts the connections it accepted until they close and
// answers a connection over the cap at once (503 on plain HTTP, closed
// on TLS) instead of serving it.
type capListener struct {
	net.Listener
	max       int64
	tls       bool
	open      atomic.Int64
	lingering chan struct{} // refused connections being answered
	refused   prometheus.Counter
	log       *slog.Logger
	lastLog   atomic.Int64 // unix nanos of the last "cap reached" log
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return l.wrap(c), nil
		}
		l.open.Add(-1)
		l.refuse(c)
	}
}

// refuse turns c away without blocking the accept loop: the 503 and a
// lingering close run on a goroutine of their own, at most maxLingering at
// once (beyond, c is closed at once).
func (l *capListener) refuse(c net.Conn) {
	l.refused.Inc()
	select {
	case l.lingering <- struct{}{}:
		go func() {
			defer func() { <-l.lingering }()
			l.turnAway(c)
		}()
	default:
		_ = c.Close()
	}
	now := time.Now().UnixNano()
	if last := l.lastLog.Load(); now-last >= int64(10*time.Second) && l.lastLog.CompareAndSwap(last, now) {
		l.log.Warn("connection cap reached: new connections are turned away", "http.max_conns", l.max)
	}
}

// maxLingering bounds the refused connections being answered at once, and
// lingerFor how long each may take: answering costs the descriptor that
// long, out of the reserve the cap keeps.
const (
	maxLingering = 64
	lingerFor    = 250 * time.Millisecond
)

// turnAway answers c 503 (plain HTTP) and closes it the way net/http
// does: its side shut first, then what the client sent read and dropped
// until it closes too or lingerFor passed, so the close does not reset the
// connection (a reset can make the client lose the answer).
func (l *capListener) turnAway(c net.Conn) {
	defer c.Close()
	if l.tls {
		return
	}
	_ = c.SetDeadline(time.Now().Add(lingerFor))
	if _, err := c.Write(busyReply); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// wrap returns c counted until its first Close. A TCP connection keeps its
// type's methods (ReadFrom for sendfile and splice, SyscallConn for the
// netpoll sets of parked connections) through the embedded *net.TCPConn.
func (l *capListener) wrap(c net.Conn) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		return &countedTCPConn{TCPConn: tc, l: l}
	}
	return &countedConn{Conn: c, l: l}
}

func (l *capListener) release(closed *atomic.Bool) {
	if closed.CompareAndSwap(false, true) {
		l.open.Add(-1)
	}
}

type countedTCPConn struct {
	*net.TCPConn
	l      *capListener
	closed atomic.Bool
}

func (c *countedTCPConn) Close() error {
	c.l.release(&c.closed)
	return c.TCPConn.Close()
}

// Socket is the connection underneath, for the netpoll sets.
func (c *countedTCPConn) Socket() net.Conn { return c.TCPConn }

type countedConn struct {
	net.Conn
	l      *capListener
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	c.l.release(&c.closed)
	return c.Conn.Close()
}

// capConns wraps ln in the connection cap of http.max_conns, with its
// metrics, unless there is none.
func (g *Gateway) capConns(ln net.Listener) net.Listener {
	n := connCap(g.cfg.HTTP.MaxConns)
	if n == 0 {
		g.log.Info("no cap on client connections", "http.max_conns", g.cfg.HTTP.MaxConns)
		return ln
	}
	l := &capListener{
		Listener: ln, max: int64(n), tls: g.cfg.TLS.Enabled(), log: g.log,
		lingering: make(chan struct{}, maxLingering),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_http_connections_refused_total",
			Help: "Client connections turned away because the gateway held http.max_conns.",
		}),
	}
	g.registry.MustRegister(l.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_http_connections",
			Help: "Client connections the public listener holds open, hijacked ones included.",
		}, func() float64 { return float64(l.open.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_http_connections_max",
			Help: "The cap on client connections (http.max_conns, or derived from the file limit).",
		}, func() float64 { return float64(n) }))
	g.log.Debug("client connection cap", "max", n)
	return l
}
