package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// leanClient calls a plain-HTTP target for the common exchange: a
// request whose body, if any, came inline in the open message.
// The exchange's own goroutine writes the request into a pooled
// connection's buffer and reads the response from it, where
// http.Transport hands each request to a connection's write loop and back
// from its read loop (three goroutines per request). The bytes on the
// wire are http.Transport's: the request is written by
// [http.Request.Write] and the response read by [http.ReadResponse].
// Every other request (streamed bodies, trailers, upgrades, Expect,
// CONNECT, https targets, targets behind a proxy) goes through the
// Server's http.Transport.
type leanClient struct {
	addr        string
	dial        dialFunc
	maxIdle     int
	idleTimeout time.Duration
	maxHead     int64

	mu     sync.Mutex
	idle   []*leanConn // most recently used last
	closed bool
}

// Defaults of the lean client, those of http.DefaultTransport (the
// dialer's are the Server's, see targetDialTimeout).
const (
	leanIdleTimeout = 90 * time.Second
	// leanMax1xx bounds the informational responses (103 Early Hints, …)
	// skipped before the final one, as http.Transport does.
	leanMax1xx = 5
)

// errHeadTooLarge is a target response head over the lean client's bound.
var errHeadTooLarge = errors.New("response head too large")

// newLeanClient returns a lean client for target that connects with
// dial, or nil when target needs what only http.Transport does (TLS, a
// proxy from the environment). dial must return the network's own
// connection (a *net.TCPConn), whose liveness idleAlive peeks at. maxIdle
// bounds the idle connections kept; maxHead bounds a response head, which
// has to fit in one NATS message anyway.
//
// The Server's dialTarget (upgrades) shares the dialer and targetAddr but
// not the rest: it speaks TLS to an https target and honours a custom
// transport's dialer, neither of which the lean client ever serves.
func newLeanClient(target *url.URL, dial dialFunc, maxIdle int, maxHead int64) *leanClient {
	if target.Scheme != "http" || !canPeek {
		return nil
	}
	if p, err := http.ProxyFromEnvironment(&http.Request{URL: target}); err != nil || p != nil {
		return nil
	}
	if maxHead <= 0 {
		maxHead = 1 << 20
	}
	return &leanClient{
		addr:        targetAddr(target),
		dial:        dial,
		maxIdle:     maxIdle,
		idleTimeout: leanIdleTimeout,
		maxHead:     maxHead,
	}
}

// leanable reports whether req may take the lean path, and whether it is
// replayable (a kept-alive connection the target closed while idle may
// then be retried, as http.Transport does). Requests with Expect
// (100-continue needs the body held back), CONNECT, and those with
// invalid fields (http.Transport refuses them with its own error) may
// not.
func leanable(req *http.Request) (ok, replayable bool) {
	if !httpguts.ValidHeaderFieldName(req.Method) || req.Method == http.MethodConnect {
		return false, false
	}
	if hasHeader(req.Header, "Expect") {
		return false, false
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false, false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false, false
			}
		}
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true, true
	}
	return true, hasHeader(req.Header, "Idempotency-Key") || hasHeader(req.Header, "X-Idempotency-Key")
}

func hasHeader(h http.Header, key string) bool {
	_, ok := h[key]
	return ok
}

// leanConn is one connection to the target. Its reader counts the bytes
// read and stops at limit, which bounds a response head.
type leanConn struct {
	c      net.Conn
	peek   *peeker
	br     *bufio.Reader
	bw     *bufio.Writer
	limit  int64
	nread  int64
	idleAt time.Time
	reused bool
}

func (pc *leanConn) Read(p []byte) (int, error) {
	if pc.limit <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > pc.limit {
		p = p[:pc.limit]
	}
	n, err := pc.c.Read(p)
	pc.limit -= int64(n)
	pc.nread += int64(n)
	return n, err
}

// get returns an idle connection, or dials one when there is none or
// fresh is set. An idle connection is taken only if it is still alive and
// holds no bytes the target sent unasked (see idleAlive): those would be
// read as the next request's response. The check and closes run outside
// the pool's lock.
func (l *leanClient) get(ctx context.Context, fresh bool) (*leanConn, error) {
	for !fresh {
		l.mu.Lock()
		n := len(l.idle)
		if n == 0 {
			l.mu.Unlock()
			break
		}
		pc := l.idle[n-1]
		l.idle[n-1] = nil
		l.idle = l.idle[:n-1]
		l.mu.Unlock()
		if time.Since(pc.idleAt) < l.idleTimeout && pc.peek.idleAlive() {
			pc.reused = true
			return pc, nil
		}
		_ = pc.c.Close()
	}
	c, err := l.dial(ctx, "tcp", l.addr)
	if err != nil {
		return nil, err
	}
	pc := &leanConn{c: c, peek: newPeeker(c), bw: bufio.NewWriter(c)}
	pc.br = bufio.NewReader(pc)
	return pc, nil
}

// put keeps pc for the next request, or closes it when the pool is full
// or closed.
func (l *leanClient) put(pc *leanConn) {
	pc.idleAt = time.Now()
	pc.nread = 0
	l.mu.Lock()
	if l.closed || len(l.idle) >= l.maxIdle {
		l.mu.Unlock()
		_ = pc.c.Close()
		return
	}
	l.idle = append(l.idle, pc)
	l.mu.Unlock()
}

// closeIdle closes the idle connections; with stop, connections given
// back later are closed too.
func (l *leanClient) closeIdle(stop bool) {
	l.mu.Lock()
	idle := l.idle
	l.idle = nil
	if stop {
		l.closed = true
	}
	l.mu.Unlock()
	for _, pc := range idle {
		_ = pc.c.Close()
	}
}

// closeExpired closes the connections idle for longer than the idle
// timeout.
func (l *leanClient) closeExpired(now time.Time) {
	l.mu.Lock()
	keep := l.idle[:0]
	var expired []*leanConn
	for _, pc := range l.idle {
		if now.Sub(pc.idleAt) >= l.idleTimeout {
			expired = append(expired, pc)
		} else {
			keep = append(keep, pc)
		}
	}
	clear(l.idle[len(keep):])
	l.idle = keep
	l.mu.Unlock()
	for _, pc := range expired {
		_ = pc.c.Close()
	}
}

// roundTrip performs req (body: inline, possibly empty) on a pooled
// connection. If req is replayable, a reused connection that fails before
// the target sent a byte (it closed the connection while idle) is retried
// once on a new one (a connection seen alive can still be closed by the
// target as the request goes out).
// The response's body gives the connection back when read to its end and
// closed.
func (l *leanClient) roundTrip(ctx context.Context, req *http.Request, inline []byte, replayable bool) (*http.Response, error) {
	for fresh := false; ; fresh = true {
		pc, err := l.get(ctx, fresh)
		if err != nil {
			return nil, err
		}
		resp, err := l.exchange(ctx, pc, req, inline)
		if err == nil {
			return resp, nil
		}
		_ = pc.c.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if fresh || !replayable || !pc.reused || pc.nread > 0 {
			return nil, err
		}
	}
}

// exchange writes req to pc and reads the response head. A cancelled ctx
// interrupts the connection's reads and writes.
func (l *leanClient) exchange(ctx context.Context, pc *leanConn, req *http.Request, inline []byte) (*http.Response, error) {
	stop := context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(time.Unix(1, 0)) })
	if len(inline) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(inline))
	}
	werr := req.Write(pc.bw)
	if werr == nil {
		werr = pc.bw.Flush()
	}
	// A target may answer and close before it read the whole request
	// (413, 401): its answer is read even when the write failed, as
	// http.Transport does.
	pc.limit = l.maxHead
	resp, err := l.readHead(pc, req)
	pc.limit = math.MaxInt64
	if err != nil {
		stop()
		if werr != nil {
			return nil, werr
		}
		return nil, err
	}
	closeAfter := resp.Close || req.Close || werr != nil
	resp.Body = &leanBody{rc: resp.Body, pc: pc, l: l, stop: stop, close: closeAfter, length: resp.ContentLength}
	return resp, nil
}

// readHead reads the final response head, skipping informational ones.
func (l *leanClient) readHead(pc *leanConn, req *http.Request) (*http.Response, error) {
	for range leanMax1xx + 1 {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			if errors.Is(err, errHeadTooLarge) {
				return nil, fmt.Errorf("%w (over %d bytes)", errHeadTooLarge, l.maxHead)
			}
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("unexpected 101 Switching Protocols to a request without Upgrade")
		case resp.StatusCode >= 200:
			return resp, nil
		}
		pc.limit = l.maxHead
	}
	return nil, fmt.Errorf("more than %d informational responses", leanMax1xx)
}

// leanBody is a response body read from a lean connection: closed after
// its end (and the connection not marked for closing), the connection
// goes back to the pool; closed earlier, the connection is closed.
type leanBody struct {
	rc     io.ReadCloser
	pc     *leanConn
	l      *leanClient
	stop   func() bool
	close  bool
	length int64
	eof    bool
	done   bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close never calls the inner body's Close, which would read a body not
// yet at its end to the end.
func (b *leanBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	if !b.eof && b.length >= 0 {
		// A body of known length read exactly to its end has not said
		// EOF yet; an empty read says it without touching the connection.
		if _, err := b.rc.Read(nil); err == io.EOF {
			b.eof = true
		}
	}
	alive := b.stop() // false: ctx was cancelled and the deadline set
	if b.eof && !b.close && alive && b.pc.br.Buffered() == 0 {
		b.l.put(b.pc)
		return nil
	}
	return b.pc.c.Close()
}
