package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Client relays HTTP requests to the agents of named upstreams over one
// NATS connection. It is safe for concurrent use.
type Client struct {
	nc      *nats.Conn
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	muxes   *muxes
	ackMs   []string // the open message's hdrAck value, the same for every request
	chunk   int      // of the body streams it sends (chunkFor)
	tries   atomic.Uint64
	// upgrades counts upgraded connections; closing ends them (Close).
	upgrades  atomic.Int64
	closing   chan struct{}
	closeOnce sync.Once
}

// NewClient returns a Client on nc. Zero fields of cfg mean their
// defaults; metrics may be nil; log receives debug and warning logs, nil
// discards them.
func NewClient(nc *nats.Conn, cfg Config, metrics *Metrics, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{nc: nc, cfg: cfg.withDefaults(), log: log, metrics: metrics, muxes: newMuxes(nc), closing: make(chan struct{}), chunk: chunkFor(nc)}
	c.ackMs = []string{strconv.FormatInt(c.cfg.AckTimeout.Milliseconds(), 10)}
	return c
}

// nextTry returns the hdrTry value of an attempt: no other attempt of this
// client has it, so the answers of an earlier exchange on a reused reply
// subject are told apart.
func (c *Client) nextTry() string {
	return strconv.FormatUint(c.tries.Add(1), 36)
}

// Close releases the client's idle reply subscriptions; requests still in
// flight keep theirs until they end. New requests fail. Upgraded
// connections joined by [Client.Forward] are closed.
func (c *Client) Close() {
	c.closeOnce.Do(func() { close(c.closing) })
	c.muxes.close()
}

// Request is one request to relay.
type Request struct {
	Method string
	// Path is the escaped path for the upstream; it starts with "/".
	Path     string
	RawQuery string
	// Header is sent as is: remove hop-by-hop headers first
	// ([OutgoingHeader] does).
	Header http.Header
	// Body is the request body; nil means none.
	Body io.Reader
	// ContentLength is the body's length; -1 means unknown.
	ContentLength int64
	// Interrupt, if set, unblocks a Body.Read in progress. The relay calls
	// it only while a Read is blocked before the body's end, when the
	// exchange ends early.
	Interrupt func()
	// Trailer holds the request's trailers, as http.Request.Trailer: its
	// keys are the declared names, its values are read once Body returned
	// io.EOF. Relayed only with a streamed Body (ContentLength -1).
	Trailer http.Header
	// Upgrade, when set, asks the target to switch to this protocol
	// (Connection: Upgrade, Upgrade: <Upgrade>); Body must be nil. If the
	// target answers 101, the Response's Body is an [*Upgraded].
	Upgrade string
}

// Response is a relayed response. Its Body must be closed.
type Response struct {
	StatusCode int
	Header     http.Header
	// ContentLength is the declared length, -1 when unknown.
	ContentLength int64
	Body          io.ReadCloser
	// Trailer holds the response's trailers once Body returned io.EOF.
	Trailer http.Header
}

// Do relays req to an agent of upstream and returns once the response head
// arrived. Errors wrap the package's sentinels ([ErrNoAgent], [ErrTimeout],
// [ErrUpstreamUnreachable], [ErrAgentLost], [ErrBadRequest]) or ctx's.
func (c *Client) Do(ctx context.Context, upstream string, req *Request) (*Response, error) {
	x, err := c.newCall(ctx, upstream, req)
	if err != nil {
		return nil, err
	}
	resp, err := x.run()
	if err != nil {
		x.close()
		return nil, err
	}
	return resp, nil
}

// call is the caller's side of one exchange.
type call struct {
	c        *Client
	upstream string
	req      *Request
	ctx      context.Context
	cancel   context.CancelCauseFunc
	prefix   string
	open     *nats.Msg
	streamed bool
	reply    string
	release  func(reuse bool) // stops the delivery of replies
	msgs     chan *nats.Msg

	agentCtl    string
	bodySubj    string
	upSubj      string    // upgrade: the agent's receiver of the caller's bytes
	upProto     string    // upgrade: the protocol the target switched to
	early       *nats.Msg // a response that served as the ack
	rcv         *natsio.Receiver
	bodyMu      sync.Mutex
	bodyReading bool // a Body.Read is in progress
	bodyDone    bool // Body returned EOF or an error
	upload      chan error
	wg          sync.WaitGroup
	finished    atomic.Bool
	closeOnce   sync.Once
	releaseOnce sync.Once
}

func (c *Client) newCall(ctx context.Context, upstream string, req *Request) (*call, error) {
	open, err := subjects.RelayRequest(upstream)
	if err != nil {
		return nil, fmt.Errorf("%w: upstream name: %v", ErrBadRequest, err)
	}
	prefix, _ := subjects.RelayInbox(upstream)
	if req.Method == "" || !strings.HasPrefix(req.Path, "/") {
		return nil, fmt.Errorf("%w: method and path required", ErrBadRequest)
	}
	x := &call{c: c, upstream: upstream, req: req, prefix: prefix, msgs: make(chan *nats.Msg, 16)}
	if err := x.buildOpen(open); err != nil {
		return nil, err
	}
	x.ctx, x.cancel = context.WithCancelCause(ctx)
	if x.reply, x.release, err = c.muxes.register(upstream, prefix, x.msgs); err != nil {
		x.cancel(err)
		return nil, fmt.Errorf("%w: subscribe: %v", ErrNoAgent, err)
	}
	return x, nil
}

// buildOpen builds the open message, with the body inline when it is
// small and of known size.
func (x *call) buildOpen(subject string) error {
	req := x.req
	head := reqHead{Method: req.Method, Path: req.Path, Query: req.RawQuery, Header: req.Header, Length: req.ContentLength}
	var inline []byte
	switch {
	case req.Body == nil || req.ContentLength == 0:
		head.Length = 0
	case req.ContentLength > 0 && req.ContentLength <= int64(x.c.cfg.InlineMax):
		inline = make([]byte, req.ContentLength)
		if _, err := io.ReadFull(req.Body, inline); err != nil {
			return fmt.Errorf("%w: reading request body: %v", ErrBadRequest, err)
		}
		x.c.metrics.addBytes("request", len(inline))
	default:
		x.streamed = true
	}
	m := newMsg(subject, opOpen)
	m.Header[hdrAck] = x.c.ackMs // read only
	data, err := head.encode(inline)
	if err != nil {
		return err
	}
	m.Data = data
	limit := int(x.c.nc.MaxPayload()) - 4096
	if len(m.Data) > limit && inline != nil {
		// Large headers: send the body as a stream instead.
		x.streamed, req.Body = true, bytes.NewReader(inline)
		m.Data = m.Data[:len(m.Data)-len(inline)]
	}
	if len(m.Data) > limit {
		return fmt.Errorf("%w: request head too large (%d bytes)", ErrBadRequest, len(m.Data))
	}
	if x.streamed {
		m.Header.Set(hdrBody, bodyStream)
		if names := declaredTrailers(req.Trailer); names != "" {
			m.Header.Set(hdrTrailers, names)
		}
	}
	if req.Upgrade != "" {
		if !validUpgrade(req.Upgrade) || req.Body != nil {
			return fmt.Errorf("%w: malformed upgrade request", ErrBadRequest)
		}
		m.Header.Set(hdrUpgrade, req.Upgrade)
	}
	x.open = m
	return nil
}

// run opens the exchange and waits for the response head.
func (x *call) run() (*Response, error) {
	start := time.Now()
	if err := x.openExchange(); err != nil {
		return nil, err
	}
	x.c.metrics.observeOpen(time.Since(start))
	if x.streamed {
		if x.bodySubj == "" {
			return nil, fmt.Errorf("%w: agent gave no body subject", ErrUpstreamUnreachable)
		}
		x.upload = make(chan error, 1)
		x.wg.Add(1)
		go x.sendBody()
	}
	return x.awaitResponse()
}

type ackResult int

const (
	ackOK ackResult = iota
	ackNone
	ackBusy
	ackTimeout
)

// openExchange publishes the open request until an agent accepts it,
// polling while no agent is there, within AgentWait.
func (x *call) openExchange() error {
	o := x.c.cfg
	deadline := time.Now().Add(o.AgentWait)
	backoff := 20 * time.Millisecond
	timeouts := 0
	for {
		want := x.c.nextTry()
		x.open.Header[hdrTry] = []string{want}
		x.open.Reply = x.reply
		if err := x.c.nc.PublishMsg(x.open); err != nil {
			return fmt.Errorf("%w: publish: %v", ErrNoAgent, err)
		}
		res, err := x.awaitAck(want)
		if err != nil {
			return err
		}
		switch res {
		case ackOK:
			return nil
		case ackTimeout:
			// Ask another agent: while the agent wait lasts, and at least
			// once (the silent one may have crashed a moment ago).
			if timeouts++; time.Now().After(deadline) && timeouts > 1 {
				return fmt.Errorf("%w: no agent of %q accepted the request", ErrNoAgent, x.upstream)
			}
			continue
		}
		left := time.Until(deadline)
		if left <= 0 {
			what := "no agent of %q within %s"
			if res == ackBusy {
				what = "every agent of %q busy for %s"
			}
			return fmt.Errorf("%w: "+what, ErrNoAgent, x.upstream, o.AgentWait)
		}
		if err := sleep(x.ctx, min(backoff, left)); err != nil {
			return err
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

// awaitAck waits for the answer to the attempt whose hdrTry value is want.
func (x *call) awaitAck(want string) (ackResult, error) {
	timer := time.NewTimer(x.c.cfg.AckTimeout)
	defer timer.Stop()
	for {
		select {
		case <-x.ctx.Done():
			return 0, context.Cause(x.ctx)
		case <-timer.C:
			return ackTimeout, nil
		case m := <-x.msgs:
			if isNoResponders(m) {
				return ackNone, nil
			}
			op, t := m.Header.Get(hdrOp), m.Header.Get(hdrTry)
			if t != want {
				if ctl := m.Header.Get(hdrCtl); (op == opAck || op == opResp) && ctl != "" && x.peerSubject("ctl", ctl) == nil {
					// A late ack or answer of an earlier attempt: that agent
					// must not serve it, or go on streaming its body.
					x.sendTo(ctl, opCancel)
				}
				continue
			}
			switch op {
			case opAck:
				ctl, body := m.Header.Get(hdrCtl), m.Header.Get(hdrBody)
				if err := x.peerSubject("ctl", ctl); err != nil {
					return 0, err
				}
				if x.streamed {
					if err := x.peerSubject("body", body); err != nil {
						return 0, err
					}
				}
				x.agentCtl, x.bodySubj = ctl, body
				return ackOK, nil
			case opResp:
				// A response that came before (or instead of) the ack
				// accepts the request.
				ctl := m.Header.Get(hdrCtl)
				if err := x.peerSubject("ctl", ctl); err != nil {
					return 0, err
				}
				x.agentCtl, x.early = ctl, m
				return ackOK, nil
			case opBusy:
				return ackBusy, nil
			case opErr:
				return 0, agentError(m)
			}
		}
	}
}

// awaitResponse waits for the response head (and, for a streamed body,
// for the agent's stream to connect) while keeping the exchange alive.
func (x *call) awaitResponse() (*Response, error) {
	o := x.c.cfg
	var pending *Response
	if m := x.early; m != nil {
		// The usual small exchange: the response came instead of the ack
		// and completes it, so no timer is needed.
		x.early = nil
		resp, err := x.response(m)
		if err != nil || resp.Body != nil {
			return resp, err
		}
		pending = resp
	}
	hb := time.NewTicker(o.Heartbeat)
	defer hb.Stop()
	lastHeard := time.Now()
	var respTimeout <-chan time.Time
	startTimer := func() {
		t := time.NewTimer(o.ResponseTimeout)
		respTimeout = t.C
	}
	upload := x.upload
	if !x.streamed && pending == nil {
		startTimer()
	}
	for {
		select {
		case <-x.ctx.Done():
			return nil, context.Cause(x.ctx)
		case err := <-upload:
			upload = nil
			if err != nil {
				return nil, err
			}
			if pending == nil && respTimeout == nil {
				startTimer()
			}
		case <-respTimeout:
			return nil, fmt.Errorf("%w: no response head from %q within %s", ErrTimeout, x.upstream, o.ResponseTimeout)
		case <-hb.C:
			if time.Since(lastHeard) > o.PeerTimeout {
				return nil, fmt.Errorf("%w: agent of %q silent for %s", ErrAgentLost, x.upstream, o.PeerTimeout)
			}
			x.sendTo(x.agentCtl, opKA)
		case m := <-x.msgs:
			if m.Header.Get(hdrCtl) != x.agentCtl {
				continue
			}
			lastHeard = time.Now()
			switch m.Header.Get(hdrOp) {
			case opErr:
				return nil, agentError(m)
			case opResp:
				resp, err := x.response(m)
				if err != nil || resp.Body != nil {
					return resp, err
				}
				pending, respTimeout = resp, nil
			case opStarted:
				if pending != nil && !x.rcv.Connected() {
					// An honest agent says "started" only after the
					// receiver answered its hello; this one did not get an
					// answer (its hello was refused, or never sent).
					x.c.metrics.violation("stream")
					return nil, fmt.Errorf("%w: agent broke the protocol (response stream not connected)", ErrAgentLost)
				}
				if pending != nil && x.upSubj != "" {
					up, err := x.upgraded()
					if err != nil {
						return nil, err
					}
					pending.Body = up
					x.stopReplies()
					return pending, nil
				}
				if pending != nil {
					pending.Body = &streamBody{x: x, r: x.rcv, resp: pending}
					x.stopReplies()
					return pending, nil
				}
			}
		}
	}
}

// response handles the response head. An inline body completes the
// exchange; for a streamed one a receiver is opened, the agent is told to
// pull, and the Response is returned without Body until it started.
func (x *call) response(m *nats.Msg) (*Response, error) {
	head, body, err := decodeResp(m.Data)
	inline := m.Header.Get(hdrBody) != bodyStream
	switched := err == nil && head.Status == http.StatusSwitchingProtocols && x.req.Upgrade != "" && !inline
	if err == nil && !switched && (head.Status < 200 || head.Status > 599 || inline && len(body) > 0 && int64(len(body)) != head.Length) {
		err = errMalformedHead
	}
	if switched && !validUpgrade(m.Header.Get(hdrUpgrade)) {
		err = errMalformedHead
	}
	if err != nil {
		x.c.metrics.violation("head")
		return nil, fmt.Errorf("%w: malformed response head from agent", ErrUpstreamUnreachable)
	}
	if switched {
		if err := x.peerSubject("up", m.Header.Get(hdrUp)); err != nil {
			return nil, err
		}
		x.upSubj, x.upProto = m.Header.Get(hdrUp), m.Header.Get(hdrUpgrade)
		head.Length = -1
	}
	r := &Response{StatusCode: head.Status, Header: head.Header, ContentLength: head.Length}
	if inline {
		x.finished.Store(true)
		x.stopReplies()
		x.c.metrics.addBytes("response", len(body))
		r.Body = &inlineBody{Reader: bytes.NewReader(body), x: x}
		return r, nil
	}
	opts := x.stream()
	if switched {
		opts = upgradeStream(opts)
	}
	rcv, err := natsio.NewReceiver(x.ctx, x.c.nc, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAgentLost, err)
	}
	x.rcv = rcv
	pull := newMsg(x.agentCtl, opPull)
	pull.Header.Set(hdrBody, rcv.Subject())
	if err := x.c.nc.PublishMsg(pull); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAgentLost, err)
	}
	return r, nil
}

// maxAgentText bounds the part of an agent's error text a caller sees.
const maxAgentText = 512

func agentError(m *nats.Msg) error {
	text := m.Data
	if len(text) > maxAgentText {
		text = text[:maxAgentText]
	}
	return fmt.Errorf("%w: %s", codeError(m.Header.Get(hdrCode)), strings.ToValidUTF8(string(text), "?"))
}

// peerSubject vets a subject the agent handed over (its control subject,
// its body receiver) before the caller publishes there: it must be a
// literal subject in the upstream's inbox space, where the agent's own
// NATS permissions let it publish. Anything else ends the exchange as
// agent lost and is counted, so an agent cannot make the caller publish
// with the caller's rights (SPEC: trust boundaries).
func (x *call) peerSubject(field, subj string) error {
	if err := subjects.CheckPeer(subj, x.prefix); err != nil {
		x.c.metrics.violation(field)
		x.c.log.Warn("relay: agent handed over a foreign subject", "upstream", x.upstream, "field", field, "err", err)
		return fmt.Errorf("%w: agent broke the protocol (%s subject)", ErrAgentLost, field)
	}
	return nil
}

// stream returns the natsio options of this exchange's body streams: the
// agent's subjects must lie in the upstream's inbox space.
func (x *call) stream() natsio.Options {
	return x.c.cfg.stream(x.prefix, x.c.chunk, func(s string) error { return subjects.CheckPeer(s, x.prefix) })
}

// sendTo publishes a control message to the agent's control subject.
func (x *call) sendTo(ctl, op string) {
	if ctl == "" {
		return
	}
	_ = x.c.nc.PublishMsg(newMsg(ctl, op))
}

// sendBody streams the request body to the agent's receiver.
func (x *call) sendBody() {
	defer x.wg.Done()
	err := x.streamBody()
	x.upload <- err
}

func (x *call) streamBody() error {
	s, err := natsio.NewSender(x.ctx, x.c.nc, x.bodySubj, x.stream())
	if err != nil {
		return streamErr(err)
	}
	buf := getBuf()
	defer putBuf(buf)
	for {
		n, rerr := x.readBody(buf)
		if rerr == io.EOF {
			err := closeStream(s, x.req.Trailer, buf[:n])
			if err == nil {
				x.c.metrics.addBytes("request", n)
			}
			return streamErr(err)
		}
		if n > 0 {
			if _, err := s.Write(buf[:n]); err != nil {
				_ = s.CloseWithError("caller stopped")
				return streamErr(err)
			}
			// Counted once the stream took them, as the response's
			// bytes are once written to the caller.
			x.c.metrics.addBytes("request", n)
		}
		if rerr != nil {
			_ = s.CloseWithError("request body: " + rerr.Error())
			if x.ctx.Err() != nil {
				return context.Cause(x.ctx)
			}
			return fmt.Errorf("%w: reading request body: %v", ErrBadRequest, rerr)
		}
	}
}

// readBody reads the request body, noting when a Read is in progress and
// when the body ended, so close interrupts only a blocked Read mid-body:
// interrupting a finished HTTP/1 body (a read deadline in the past) would
// break the server's reuse of the client's connection.
func (x *call) readBody(buf []byte) (int, error) {
	x.bodyMu.Lock()
	if x.bodyDone {
		x.bodyMu.Unlock()
		return 0, errExchangeClosed
	}
	x.bodyReading = true
	x.bodyMu.Unlock()
	n, err := x.req.Body.Read(buf)
	x.bodyMu.Lock()
	x.bodyReading = false
	x.bodyDone = err != nil
	x.bodyMu.Unlock()
	return n, err
}

// interruptBody unblocks a Read of the request body in progress, if any,
// and stops further reads.
func (x *call) interruptBody() {
	x.bodyMu.Lock()
	defer x.bodyMu.Unlock()
	if x.bodyReading && !x.bodyDone && x.req.Interrupt != nil {
		x.req.Interrupt()
	}
	x.bodyDone = true
}

// streamErr maps a natsio error of the request body stream. An agent that
// stopped reading (the upstream answered without the whole body) is fine.
func streamErr(err error) error {
	switch {
	case err == nil, errors.Is(err, natsio.ErrCanceled):
		return nil
	case errors.Is(err, natsio.ErrPeerLost), errors.Is(err, natsio.ErrNoReceiver):
		return fmt.Errorf("%w: %v", ErrAgentLost, err)
	}
	return err
}

// close ends the exchange: a response not read to its end is cancelled at
// the agent, and the body upload is stopped and waited for.
func (x *call) close() {
	x.closeOnce.Do(func() {
		switch {
		case x.finished.Load():
		case x.agentCtl != "":
			x.sendTo(x.agentCtl, opCancel)
		default:
			// No agent accepted yet, but one may have the request.
			if subj, err := subjects.RelayCancel(x.upstream); err == nil {
				m := newMsg(subj, opCancel)
				m.Header.Set(hdrRepl, x.reply)
				_ = x.c.nc.PublishMsg(m)
			}
		}
		x.stopReplies()
		if x.rcv != nil {
			_ = x.rcv.Close()
		}
		x.cancel(errExchangeClosed)
		x.interruptBody()
		x.wg.Wait()
	})
}

// stopReplies ends the delivery of messages on the reply subject.
//
// Only the reply subject of an exchange that is over at the agent too
// (finished: its whole response came inline, or its streamed body was read
// to its end, which the receiver confirms to the agent's sender) may serve
// another exchange: an agent keys the exchanges it serves by reply subject
// for the cancel broadcast (see close), and one still streaming a response
// or an upgraded connection must not be cancelled by a later exchange's
// broadcast. A finished stream's exchange that a later broadcast still
// reaches at the agent has sent everything; the cancel can at most cut
// short its wait for the receiver's confirmation.
func (x *call) stopReplies() {
	x.releaseOnce.Do(func() { x.release(x.finished.Load()) })
}

var errExchangeClosed = errors.New("relay: exchange closed")

// inlineBody is a response body that came with the head.
type inlineBody struct {
	*bytes.Reader
	x *call
}

func (b *inlineBody) Close() error { b.x.close(); return nil }

// streamBody is a response body streamed from the agent.
type streamBody struct {
	x    *call
	r    *natsio.Receiver
	resp *Response // gets the trailers at the end
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	return n, b.done(n, err)
}

// writeTo writes the body to w piece by piece as it arrives from the
// agent, without a copy, calling flush when no further piece has arrived
// (see [natsio.Receiver.WriteTo]). It returns w's or flush's error, or
// the stream's as Read maps it, nil at the end.
func (b *streamBody) writeTo(w io.Writer, flush func() error) error {
	fw := &flushWriter{streamWriter: streamWriter{w: w, wrote: b.wrote}, flush: flush}
	_, err := b.r.WriteTo(fw)
	if fw.err != nil {
		return fw.err
	}
	if err == nil {
		err = io.EOF
	}
	if err = b.done(0, err); err != io.EOF {
		return err
	}
	return nil
}

func (b *streamBody) wrote(n int) { b.x.c.metrics.addBytes("response", n) }

// done counts n bytes read and maps the stream's error: at the end the
// trailers are decoded into the response.
func (b *streamBody) done(n int, err error) error {
	b.x.c.metrics.addBytes("response", n)
	switch {
	case err == nil:
		return nil
	case err == io.EOF:
		tr, terr := decodeTrailer(b.r.Trailer())
		if terr != nil {
			b.x.c.metrics.violation("trailer")
			return fmt.Errorf("%w: %v", ErrUpstreamBroken, terr)
		}
		b.resp.Trailer = tr
		b.x.finished.Store(true)
		return io.EOF
	case errors.Is(err, natsio.ErrPeerLost):
		return fmt.Errorf("%w: %v", ErrAgentLost, err)
	}
	var re *natsio.RemoteError
	if errors.As(err, &re) {
		return fmt.Errorf("%w: %s", ErrUpstreamBroken, re.Reason)
	}
	if b.x.ctx.Err() != nil {
		return context.Cause(b.x.ctx)
	}
	return err
}

func (b *streamBody) Close() error { b.x.close(); return nil }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// bufPool holds the buffers of body copies: 1 MiB, natsio's largest chunk.
var bufPool = httpx.NewBuffers(1 << 20)

func getBuf() []byte  { return *bufPool.Get() }
func putBuf(b []byte) { bufPool.Put(&b) }
