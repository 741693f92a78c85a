package middleman

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/internal/protocol"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Conn is what a [Session] needs from its transport: a WebSocket in
// production (see http.go), anything message-oriented in principle.
type Conn interface {
	// NextReader blocks until the next message starts and returns its type
	// (text or not) and a reader of its payload.
	NextReader() (text bool, r io.Reader, err error)
	// WriteBatch writes each of msgs as one text message, in order.
	WriteBatch(ctx context.Context, msgs [][]byte) error
	// Ping sends a ping and waits for its pong.
	Ping(ctx context.Context) error
	// SetReadLimit bounds the size of the next messages.
	SetReadLimit(n int64)
	// Close closes with code and reason; the close handshake is bounded by
	// the transport.
	Close(code int, reason string) error
}

// handshakeLimit bounds the key message read: a longer one is refused
// (1008) without reading the rest.
const handshakeLimit = 4096

// privatePrefix starts every connection's private key, MSG:<cid>.
const privatePrefix = "MSG:"

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuf() *bytes.Buffer {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		bufPool.Put(b)
	}
}

// Session is one authenticated middleman connection. Its read loop owns
// the connection and processes frames in order; when the connection can
// park (a [parker], the WebSocket of http.go on Linux) the loop ends while
// nothing is buffered and resumes on a new goroutine when the client sends
// something. The hub's dispatcher and other sessions fill a bounded send
// queue without ever blocking; a writer goroutine exists only while the
// queue has something in it, and pings come from a timer, so an idle
// connection costs no goroutine (one where it cannot park).
type Session struct {
	hub   *Hub
	conn  Conn
	n     uint64
	cid   string
	level level
	uid   atomic.Pointer[string]

	// Owned by the read loop.
	keys        map[string]struct{}
	serving     map[string]struct{}
	seq         uint64
	lookupStart time.Time
	lookups     int

	mu        sync.Mutex
	queue     [][]byte
	spare     [][]byte
	queued    int
	closed    bool
	pending   map[uint64]*pending
	served    map[string]*served
	writing   bool        // a writer goroutine is draining the queue
	pinger    *time.Timer // next keepalive ping
	closeOnce sync.Once
	closers   sync.WaitGroup

	// Set by run, for the read path resumed after a park.
	resume  func()
	stopCtx func() bool
	ended   func(error)
}

// parker is a [Conn] that can wait for its next message without a
// goroutine: Park returns true once it arranged for resume to run on a new
// goroutine when the client sent something or went away (false: nothing
// arranged, bytes are buffered or it cannot).
type parker interface {
	Park(resume func()) bool
}

// errParked ends a read loop whose connection waits in the poller.
var errParked = errors.New("middleman: parked")

// Serve runs one connection: the key handshake (bounded by the handshake
// timeout), then the session until the peer leaves, the connection fails or
// ctx ends (the connection is then closed with 1001). It returns once every
// goroutine of the connection has finished.
func (h *Hub) Serve(ctx context.Context, conn Conn) error {
	errc := make(chan error, 1)
	h.Start(ctx, conn, func(err error) { errc <- err })
	return <-errc
}

// Start is [Hub.Serve] in the background: ended gets what Serve would
// return. The handshake and the registration run on a goroutine that ends
// with them; the read loop then starts on a fresh one, so that where the
// connection cannot park it keeps the smallest stack the wait needs (a
// grown stack shrinks only by halves, and only when mostly unused).
func (h *Hub) Start(ctx context.Context, conn Conn, ended func(error)) {
	go func() {
		s, err := h.open(ctx, conn)
		if err != nil {
			ended(err)
			return
		}
		go s.run(ctx, ended)
	}()
}

// open reads the key and registers the session.
func (h *Hub) open(ctx context.Context, conn Conn) (*Session, error) {
	lvl, err := h.handshake(ctx, conn)
	if err != nil {
		h.m.error(err)
		return nil, err
	}
	n := h.nextConn.Add(1)
	s := &Session{hub: h, conn: conn, n: n, cid: subjects.MiddlemanCID(h.gw, n), level: lvl}
	if err := h.register(s); err != nil {
		_ = s.conn.Close(CloseInternal, "internal error")
		return nil, err
	}
	s.hub.m.conns.WithLabelValues(s.level.label()).Inc()
	s.send([]byte("MM OK"), "HANDSHAKE")
	s.send([]byte(s.cid), "HANDSHAKE")
	return s, nil
}

// handshake reads the key: a configured key in a text message within the
// handshake timeout, else the connection is closed with 1008 (1001 when
// ctx ends first).
func (h *Hub) handshake(ctx context.Context, conn Conn) (level, error) {
	conn.SetReadLimit(handshakeLimit + 1) // readKey reads no more

	var once sync.Once
	aborted := make(chan struct{})
	var abortErr error
	abort := func(code int, reason string, err error) {
		once.Do(func() {
			abortErr = err
			_ = conn.Close(code, reason)
			close(aborted)
		})
	}
	t := time.AfterFunc(h.cfg.HandshakeTimeout, func() {
		abort(ClosePolicy, "handshake timeout", ErrHandshakeTimeout)
	})
	stop := context.AfterFunc(ctx, func() {
		abort(CloseGoingAway, "gateway shutting down", protocol.ErrShuttingDown)
	})
	text, key, err := readKey(conn)
	if timerStopped, ctxStopped := t.Stop(), stop(); !timerStopped || !ctxStopped {
		<-aborted
		return levelNone, abortErr
	}
	if err != nil {
		closeReading(conn, ClosePolicy, "handshake failed")
		return levelNone, fmt.Errorf("middleman: handshake: %w", err)
	}
	lvl, err := h.checkKey(text, key)
	if err != nil {
		closeReading(conn, CloseCode(err), "key refused")
		return levelNone, err
	}
	conn.SetReadLimit(int64(h.cfg.MaxFrame))
	return lvl, nil
}

// checkKey is the trust level of the key message, or why it is refused.
func (h *Hub) checkKey(text bool, key string) (level, error) {
	switch {
	case !text:
		return levelNone, ErrBinaryKey
	case len(key) > MaxKeyLen:
		return levelNone, fmt.Errorf("%w: longer than %d bytes", ErrBadKey, MaxKeyLen)
	case !utf8.ValidString(key):
		return levelNone, ErrInvalidUTF8
	}
	if lvl := h.keys[key]; lvl != levelNone {
		return lvl, nil
	}
	return levelNone, ErrBadKey
}

// readKey reads the key message, at most handshakeLimit bytes of it (a
// longer one is returned cut, which no key matches).
func readKey(conn Conn) (bool, string, error) {
	text, r, err := conn.NextReader()
	for errors.Is(err, errNoMessage) { // a ping before the key
		text, r, err = conn.NextReader()
	}
	if err != nil {
		return false, "", err
	}
	buf := getBuf()
	defer putBuf(buf)
	if _, err := buf.ReadFrom(io.LimitReader(r, handshakeLimit+1)); err != nil {
		return false, "", err
	}
	if buf.Len() > handshakeLimit {
		return text, buf.String(), nil // over MaxKeyLen: refused as too long
	}
	return text, strings.TrimSpace(buf.String()), nil
}

// CID is the connection id, unique across the cluster.
func (s *Session) CID() string { return s.cid }

// UID is the uid set by INT ("" until then).
func (s *Session) UID() string {
	if p := s.uid.Load(); p != nil {
		return *p
	}
	return ""
}

func (s *Session) setUID(uid string) { s.uid.Store(&uid) }

func (s *Session) trusted() bool { return s.level >= levelService }

// run serves a registered session until its connection ends, then calls
// ended. While the connection is idle its read path may park (no
// goroutine); it resumes on a new one.
func (s *Session) run(ctx context.Context, ended func(error)) {
	s.mu.Lock()
	if !s.closed {
		s.pinger = time.AfterFunc(s.hub.cfg.PingInterval, s.ping)
	}
	s.mu.Unlock()
	s.ended = ended
	s.resume = func() { s.serveConn(ctx, true) }
	s.stopCtx = context.AfterFunc(ctx, func() { s.close(CloseGoingAway, "gateway shutting down") })
	s.serveConn(ctx, false)
}

// serveConn reads frames until the connection parks or ends; at the end it
// tears the session down. woken: the poller found the connection readable.
func (s *Session) serveConn(ctx context.Context, woken bool) {
	err := s.readLoop(ctx, woken)
	if err == errParked {
		return
	}
	s.stopCtx()
	s.end()
	s.close(CloseNormal, "")
	s.closers.Wait()
	s.hub.m.conns.WithLabelValues(s.level.label()).Dec()
	s.ended(err)
}

// readLoop processes frames in order until the connection fails or, when
// nothing is buffered, parks. A woken loop reads before it parks again.
func (s *Session) readLoop(ctx context.Context, woken bool) error {
	p, canPark := s.conn.(parker)
	for {
		if canPark && !woken && p.Park(s.resume) {
			return errParked
		}
		woken = false
		text, r, err := s.conn.NextReader()
		if errors.Is(err, errNoMessage) {
			continue
		}
		if err != nil {
			return err
		}
		buf := getBuf()
		_, err = buf.ReadFrom(r)
		if err != nil {
			putBuf(buf)
			return err
		}
		if !text {
			putBuf(buf)
			s.hub.m.received("other")
			s.refuse(ErrBinary)
			continue
		}
		if !utf8.Valid(buf.Bytes()) {
			putBuf(buf)
			s.hub.m.received("other")
			s.hub.m.error(ErrInvalidUTF8)
			s.closeOnce.Do(func() {
				s.mu.Lock()
				s.closed = true
				s.mu.Unlock()
				closeReading(s.conn, CloseInvalidData, "invalid UTF-8")
			})
			return ErrInvalidUTF8
		}
		f, err := Parse(buf.Bytes())
		putBuf(buf)
		if err != nil {
			s.hub.m.received("other")
			s.refuse(err)
			continue
		}
		s.hub.m.received(f.Cmd)
		if err := s.handle(ctx, f); err != nil {
			s.refuse(err)
		}
	}
}

// refuse answers a refused frame with `PUB ERROR` and counts it.
func (s *Session) refuse(err error) {
	s.hub.m.error(err)
	f := Frame{Cmd: "PUB", Key: "ERROR", Body: []byte(WireText(err))}
	s.send(f.Bytes(), "ERROR")
}

// end unregisters the session, fails what it still owes and stops timers.
func (s *Session) end() {
	s.hub.unregister(s, setKeys(s.keys), setKeys(s.serving))
	s.mu.Lock()
	s.closed = true
	pend, owed := s.pending, s.served
	s.pending, s.served, s.queue, s.spare = nil, nil, nil, nil
	if s.pinger != nil {
		s.pinger.Stop()
	}
	s.mu.Unlock()
	for _, p := range pend {
		p.timer.Stop()
	}
	for _, sv := range owed {
		sv.timer.Stop()
		s.hub.answer(sv.req, kindGone)
	}
}

func setKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// closeReading closes conn from its read path: a transport that can
// read the client's close frame itself does (see wsConn.CloseReading).
func closeReading(conn Conn, code int, reason string) {
	if rc, ok := conn.(interface{ CloseReading(int, string) error }); ok {
		_ = rc.CloseReading(code, reason)
		return
	}
	_ = conn.Close(code, reason)
}

// close starts closing the connection with code once; it never blocks.
func (s *Session) close(code int, reason string) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.closers.Add(1)
		go func() {
			defer s.closers.Done()
			_ = s.conn.Close(code, reason)
		}()
	})
}

// send queues one message for the client. A full queue makes the session a
// slow consumer: it is closed with 1008 and counted.
func (s *Session) send(data []byte, kind string) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	o := &s.hub.cfg
	if len(s.queue) > 0 && (len(s.queue) >= o.SendQueue || s.queued+len(data) > o.SendQueueBytes) {
		s.mu.Unlock()
		s.hub.m.slow.Inc()
		s.hub.m.error(ErrSlowConsumer)
		s.close(ClosePolicy, "slow consumer")
		return false
	}
	s.queue = append(s.queue, data)
	s.queued += len(data)
	start := !s.writing
	if start {
		s.writing = true
		s.closers.Add(1) // before closed is set: run's Wait sees it
	}
	s.mu.Unlock()
	s.hub.m.out[kind].Inc()
	if start {
		go s.write()
	}
	return true
}

// write drains the send queue in batches and ends when it is empty (the
// next send starts another).
func (s *Session) write() {
	defer s.closers.Done()
	for {
		s.mu.Lock()
		batch := s.queue
		if s.closed || len(batch) == 0 {
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.queue, s.spare, s.queued = s.spare, nil, 0
		s.mu.Unlock()
		if err := s.writeBatch(batch); err != nil {
			s.mu.Lock()
			s.writing = false
			s.mu.Unlock()
			s.close(CloseGoingAway, "write failed")
			return
		}
		clear(batch)
		s.mu.Lock()
		if cap(batch) <= 64 && !s.closed {
			s.spare = batch[:0]
		}
		s.mu.Unlock()
	}
}

func (s *Session) writeBatch(batch [][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.hub.cfg.WriteTimeout)
	defer cancel()
	return s.conn.WriteBatch(ctx, batch)
}

// ping runs on the keepalive timer: a ping whose pong does not come back
// within the write timeout closes the connection with 1008.
func (s *Session) ping() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closers.Add(1)
	s.mu.Unlock()
	defer s.closers.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.hub.cfg.WriteTimeout)
	defer cancel()
	if err := s.conn.Ping(ctx); err != nil {
		s.close(ClosePolicy, "ping timeout")
		return
	}
	s.mu.Lock()
	if !s.closed {
		s.pinger.Reset(s.hub.cfg.PingInterval)
	}
	s.mu.Unlock()
}

// Trust levels of a handshake key.
type level int

const (
	levelNone level = iota
	levelClient
	levelService
	levelSuper
)

func (l level) label() string {
	switch l {
	case levelSuper:
		return "super"
	case levelService:
		return "trusted"
	}
	return "untrusted"
}
