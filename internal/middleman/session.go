package middleman

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/service"
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

// handshakeLimit bounds the key message.
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

// pending is a REQ or remote INT of this session awaiting its answer.
type pending struct {
	cmd, key string
	timer    *time.Timer
}

// served is a REQ handed to this session as responder, awaiting its RES.
type served struct {
	reply string
	timer *time.Timer
}

// Session is one authenticated middleman connection. Its read loop (the
// goroutine of Serve) owns the connection and processes frames in order;
// its write loop drains a bounded send queue that the hub's dispatcher and
// other sessions fill without ever blocking.
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
	wake      chan struct{}
	closeOnce sync.Once
	closers   sync.WaitGroup
}

// Serve runs one connection: the key handshake (bounded by the handshake
// timeout), then the session until the peer leaves, the connection fails or
// ctx ends (the connection is then closed with 1001). It returns once every
// goroutine of the connection has finished.
func (h *Hub) Serve(ctx context.Context, conn Conn) error {
	lvl, err := h.handshake(ctx, conn)
	if err != nil {
		h.m.error(err)
		return err
	}
	n := h.nextConn.Add(1)
	s := &Session{hub: h, conn: conn, n: n, cid: subjects.MiddlemanCID(h.gw, n), level: lvl,
		wake: make(chan struct{}, 1)}
	return s.run(ctx)
}

// handshake reads the key: a configured key in a text message within the
// handshake timeout, else the connection is closed with 1008 (1001 when
// ctx ends first).
func (h *Hub) handshake(ctx context.Context, conn Conn) (level, error) {
	conn.SetReadLimit(handshakeLimit)
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
	t := time.AfterFunc(h.opts.HandshakeTimeout, func() {
		abort(ClosePolicy, "handshake timeout", ErrHandshakeTimeout)
	})
	stop := context.AfterFunc(ctx, func() {
		abort(CloseGoingAway, "gateway shutting down", service.ErrShuttingDown)
	})
	text, key, err := readKey(conn)
	if timerStopped, ctxStopped := t.Stop(), stop(); !timerStopped || !ctxStopped {
		<-aborted
		return levelNone, abortErr
	}
	if err != nil {
		_ = conn.Close(ClosePolicy, "handshake failed")
		return levelNone, fmt.Errorf("middleman: handshake: %w", err)
	}
	if !text {
		_ = conn.Close(ClosePolicy, "binary key")
		return levelNone, ErrBinaryKey
	}
	lvl := h.keys[key]
	if lvl == levelNone {
		_ = conn.Close(ClosePolicy, "invalid key")
		return levelNone, ErrBadKey
	}
	conn.SetReadLimit(int64(h.opts.MaxFrame))
	return lvl, nil
}

func readKey(conn Conn) (bool, string, error) {
	text, r, err := conn.NextReader()
	if err != nil {
		return false, "", err
	}
	buf := getBuf()
	defer putBuf(buf)
	if _, err := buf.ReadFrom(r); err != nil {
		return false, "", err
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

func (s *Session) run(ctx context.Context) error {
	if err := s.hub.register(s); err != nil {
		_ = s.conn.Close(CloseInternal, "internal error")
		return err
	}
	gauge := s.hub.m.conns.WithLabelValues(s.level.label())
	gauge.Inc()
	defer gauge.Dec()
	s.send([]byte("MM OK"), "HANDSHAKE")
	s.send([]byte(s.cid), "HANDSHAKE")
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeLoop()
	}()
	stop := context.AfterFunc(ctx, func() { s.close(CloseGoingAway, "gateway shutting down") })
	err := s.readLoop(ctx)
	stop()
	s.end()
	s.close(CloseNormal, "")
	<-writerDone
	s.closers.Wait()
	return err
}

// readLoop processes frames in order until the connection fails.
func (s *Session) readLoop(ctx context.Context) error {
	for {
		text, r, err := s.conn.NextReader()
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
	s.mu.Unlock()
	for _, p := range pend {
		p.timer.Stop()
	}
	for _, sv := range owed {
		sv.timer.Stop()
		s.hub.answer(sv.reply, kindGone)
	}
}

func setKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// close starts closing the connection with code once; it never blocks.
func (s *Session) close(code int, reason string) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.wakeWriter()
		s.closers.Add(1)
		go func() {
			defer s.closers.Done()
			_ = s.conn.Close(code, reason)
		}()
	})
}

func (s *Session) wakeWriter() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// send queues one message for the client. A full queue makes the session a
// slow consumer: it is closed with 1008 and counted.
func (s *Session) send(data []byte, kind string) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	o := &s.hub.opts
	if len(s.queue) > 0 && (len(s.queue) >= o.SendQueue || s.queued+len(data) > o.SendQueueBytes) {
		s.mu.Unlock()
		s.hub.m.slow.Inc()
		s.hub.m.error(ErrSlowConsumer)
		s.close(ClosePolicy, "slow consumer")
		return false
	}
	s.queue = append(s.queue, data)
	s.queued += len(data)
	s.mu.Unlock()
	s.hub.m.out[kind].Inc()
	s.wakeWriter()
	return true
}

// writeLoop writes queued messages in batches and pings the peer.
func (s *Session) writeLoop() {
	ping := time.NewTimer(s.hub.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-s.wake:
		case <-ping.C:
			s.closers.Add(1)
			go s.ping()
			ping.Reset(s.hub.opts.PingInterval)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		batch := s.queue
		s.queue, s.spare, s.queued = s.spare, nil, 0
		s.mu.Unlock()
		if err := s.writeBatch(batch); err != nil {
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
	if len(batch) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.hub.opts.WriteTimeout)
	defer cancel()
	return s.conn.WriteBatch(ctx, batch)
}

func (s *Session) ping() {
	defer s.closers.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.hub.opts.WriteTimeout)
	defer cancel()
	if err := s.conn.Ping(ctx); err != nil {
		s.close(ClosePolicy, "ping timeout")
	}
}

// maxPending bounds the REQs and INTs one connection may have awaiting
// an answer.
const maxPending = 4096

// await records a pending REQ or INT with its timeout. It refuses when the
// connection already waits for maxPending answers.
func (s *Session) await(seq uint64, cmd, key string) error {
	p := &pending{cmd: cmd, key: key}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if len(s.pending) >= maxPending {
		return ErrTooManyPending
	}
	if s.pending == nil {
		s.pending = map[uint64]*pending{}
	}
	s.pending[seq] = p
	p.timer = time.AfterFunc(s.hub.opts.RequestTimeout, func() {
		if s.take(seq) != nil {
			s.refuse(&CommandError{Cmd: cmd, Key: key, Err: ErrTimeout})
		}
	})
	return nil
}

// take removes and returns pending request seq, or nil: a request is
// answered at most once.
func (s *Session) take(seq uint64) *pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[seq]
	delete(s.pending, seq)
	return p
}

// resolve handles the answer to pending request seq.
func (s *Session) resolve(seq uint64, kind string, status string, data []byte) {
	p := s.take(seq)
	if p == nil {
		return
	}
	p.timer.Stop()
	var err error
	switch {
	case kind == kindRes:
		s.send(data, "RES")
	case kind == kindIntOK:
	case kind == kindIntUnknown, p.cmd == cmdINT && status == "503":
		err = ErrUnknownCID
	case status == "503":
		err = ErrNoResponder
	default:
		err = ErrResponderGone
	}
	if err != nil {
		s.refuse(&CommandError{Cmd: p.cmd, Key: p.key, Err: err})
	}
}

// serve hands a REQ to this session as responder. It reports false when
// the session is ending.
func (s *Session) serve(rid, reply string, data []byte) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if s.served == nil {
		s.served = map[string]*served{}
	}
	sv := &served{reply: reply}
	s.served[rid] = sv
	sv.timer = time.AfterFunc(s.hub.opts.RequestTimeout, func() { s.forget(rid) })
	s.mu.Unlock()
	if !s.send(data, "REQ") {
		s.forget(rid)
		return false
	}
	return true
}

// forget drops a served request (answered or expired).
func (s *Session) forget(rid string) {
	s.mu.Lock()
	sv := s.served[rid]
	delete(s.served, rid)
	s.mu.Unlock()
	if sv != nil {
		sv.timer.Stop()
	}
}
