package gateway

import (
	"net"
	"sync"
)

// serveAgain hands conn, taken over by a handler (http.Hijacker) and idle
// at a request boundary, back to the HTTP server: it serves conn as if its
// listener had just accepted it, so the client's next request on the
// connection is read and routed as usual (a parked Megaphone poll keeps
// its client's keep-alive this way instead of closing). net/http has no
// call that serves one connection, so conn goes through Serve on a
// listener that yields it once; that Serve returns at its second Accept,
// while the connection is served on. Once the gateway is stopping, conn
// is closed instead: served again then, it would count as a new
// connection that http.Server.Shutdown waits up to 5 s for.
func (g *Gateway) serveAgain(conn net.Conn) {
	if g.stopping.Load() {
		_ = conn.Close()
		return
	}
	// A Serve that begins after Shutdown never accepts it and closes
	// the listener, which closes conn.
	go func() { _ = g.srv.Serve(&handBack{conn: conn, addr: g.ln.Addr()}) }()
}

// handBack is a listener that yields one connection.
type handBack struct {
	mu   sync.Mutex
	conn net.Conn // until Accept or Close takes it
	addr net.Addr
}

func (l *handBack) take() net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.conn
	l.conn = nil
	return c
}

// Accept returns the connection, then net.ErrClosed, which ends Serve.
func (l *handBack) Accept() (net.Conn, error) {
	if c := l.take(); c != nil {
		return c, nil
	}
	return nil, net.ErrClosed
}

// Close closes the connection if Accept never returned it.
func (l *handBack) Close() error {
	if c := l.take(); c != nil {
		return c.Close()
	}
	return nil
}

func (l *handBack) Addr() net.Addr { return l.addr }
