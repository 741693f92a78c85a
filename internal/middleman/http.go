package middleman

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/internal/httpx"
)

// Buffer sizes of an upgraded connection. net/http hands over 4 KiB + 4 KiB;
// idle connections dominate memory, so they get small buffers: a frame
// larger than the read buffer is read past it, and the writes of a batch
// collect in the corked writer underneath, not in bufio.
const (
	connReadBuffer  = 512
	connWriteBuffer = 512
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
	sb := &smallBuffers{ResponseWriter: w}
	ws, err := websocket.Accept(sb, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // the Origin was checked above
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		done()
		return // Accept answered the client
	}
	s.hub.Start(ctx, &wsConn{c: ws, out: sb.out}, func(err error) {
		done()
		s.log.Debug("middleman connection ended", "err", err)
	})
}

// wsConn adapts a coder/websocket connection to [Conn].
type wsConn struct {
	c   *websocket.Conn
	out *corkWriter // nil when the server did not hand out its conn
}

var _ Conn = (*wsConn)(nil)

func (w *wsConn) NextReader() (bool, io.Reader, error) {
	typ, r, err := w.c.Reader(context.Background())
	return typ == websocket.MessageText, r, err
}

// WriteBatch writes msgs as text messages. They are corked into as few
// writes as the buffer allows (not one syscall each), and the deadline of
// ctx applies to the connection, so the library needs no per-message
// timer.
func (w *wsConn) WriteBatch(ctx context.Context, msgs [][]byte) (err error) {
	wctx := context.Background()
	if w.out == nil {
		wctx = ctx
	} else {
		w.out.cork(ctx)
		defer func() {
			if uerr := w.out.uncork(); err == nil {
				err = uerr
			}
		}()
	}
	for _, m := range msgs {
		if err := w.c.Write(wctx, websocket.MessageText, m); err != nil {
			return err
		}
	}
	return nil
}

func (w *wsConn) Ping(ctx context.Context) error { return w.c.Ping(ctx) }

func (w *wsConn) SetReadLimit(n int64) { w.c.SetReadLimit(n) }

func (w *wsConn) Close(code int, reason string) error {
	return w.c.Close(websocket.StatusCode(code), reason)
}

// smallBuffers hijacks like its ResponseWriter but hands out small bufio
// buffers, keeping any bytes the server had already read, and a corkable
// writer underneath.
type smallBuffers struct {
	http.ResponseWriter
	out *corkWriter
}

func (s *smallBuffers) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		return nil, nil, err
	}
	if n := brw.Reader.Buffered(); n > 0 {
		// The upgrader re-wraps the returned conn, so the bytes net/http
		// already read must come from the conn itself.
		early, _ := brw.Reader.Peek(n)
		conn = &prefixConn{Conn: conn, early: bytes.Clone(early)}
	}
	s.out = &corkWriter{conn: conn}
	return conn, bufio.NewReadWriter(bufio.NewReaderSize(conn, connReadBuffer), bufio.NewWriterSize(s.out, connWriteBuffer)), nil
}

// corkMax is the most bytes a corked writer holds before writing anyway.
const corkMax = 64 << 10

// corkWriter writes through to conn, except while corked: then writes
// collect in a pooled buffer that uncork sends in one write.
type corkWriter struct {
	conn   net.Conn
	mu     sync.Mutex
	corked bool
	buf    *bytes.Buffer
}

func (w *corkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.corked {
		return w.conn.Write(p)
	}
	if w.buf == nil {
		w.buf = getBuf()
	}
	w.buf.Write(p)
	if w.buf.Len() >= corkMax {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// cork starts collecting writes; every write until uncork must finish
// within ctx's deadline.
func (w *corkWriter) cork(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked = true
	if d, ok := ctx.Deadline(); ok {
		_ = w.conn.SetWriteDeadline(d)
	}
}

// uncork writes what collected and lifts the deadline.
func (w *corkWriter) uncork() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked = false
	defer func() { _ = w.conn.SetWriteDeadline(time.Time{}) }()
	if w.buf == nil {
		return nil
	}
	err := w.flushLocked()
	putBuf(w.buf)
	w.buf = nil
	return err
}

func (w *corkWriter) flushLocked() error {
	_, err := w.conn.Write(w.buf.Bytes())
	w.buf.Reset()
	return err
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
