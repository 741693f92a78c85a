package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/subjects"
)

// exchange is the agent's side of one relayed request.
type exchange struct {
	s        *Server
	id       string
	ctl      string
	reply    string
	try      string
	ctlVal   []string // hdrCtl value of every message to the caller, shared (read only)
	tryVal   []string // hdrTry value, likewise
	head     reqHead
	inline   []byte
	streamed bool
	ctx      context.Context
	cancel   context.CancelCauseFunc
	heardAt  atomic.Int64
	waiting  atomic.Bool
	pull     chan string
	ackDelay time.Duration
	ackTimer *time.Timer
	upgrade  string      // the Upgrade asked for; "" for an ordinary request
	trailers http.Header // the request's declared trailers (names only)
	respTr   http.Header // the response's trailers, complete at its body's end
}

func (s *Server) newExchange(parent context.Context, id, reply, try string, head reqHead, inline []byte, streamed bool) *exchange {
	x := &exchange{
		s: s, id: id, ctl: subjects.RelayExchange(s.ctlSpace, id), reply: reply, try: try,
		head: head, inline: inline, streamed: streamed, pull: make(chan string, 1),
	}
	x.ctlVal, x.tryVal = []string{x.ctl}, []string{try}
	x.ctx, x.cancel = context.WithCancelCause(parent)
	x.heard()
	x.waiting.Store(true)
	return x
}

func (x *exchange) heard() { x.heardAt.Store(time.Now().UnixNano()) }

func (x *exchange) lastHeard() time.Time { return time.Unix(0, x.heardAt.Load()) }

// msg returns a message of kind op to the caller, signed with this
// exchange's control subject. Answers carry the attempt number: one that
// beats the delayed ack stands in for it.
func (x *exchange) msg(op string) *nats.Msg {
	m := newMsg(x.reply, op)
	m.Header[hdrCtl] = x.ctlVal
	if op == opResp || op == opErr {
		m.Header[hdrTry] = x.tryVal
	}
	return m
}

func (x *exchange) send(m *nats.Msg) {
	if err := x.s.nc.PublishMsg(m); err != nil {
		x.s.log.Debug("relay publish", "op", m.Header.Get(hdrOp), "err", err)
	}
}

func (x *exchange) sendErr(code string, err error) {
	m := x.msg(opErr)
	m.Header.Set(hdrCode, code)
	m.Data = []byte(err.Error())
	x.send(m)
}

// sendAck accepts the request; bodySubj is the receiver of a streamed
// request body.
func (x *exchange) sendAck(bodySubj string) {
	ack := x.msg(opAck)
	ack.Header[hdrTry] = x.tryVal
	if bodySubj != "" {
		ack.Header.Set(hdrBody, bodySubj)
	}
	x.send(ack)
}

// run serves the exchange: accept, call the target, relay the response.
func (x *exchange) run() {
	defer x.s.finish(x)
	defer x.cancel(nil)
	if x.upgrade != "" {
		x.runUpgrade()
		return
	}
	var body io.Reader
	if x.streamed {
		rcv, err := natsio.NewReceiver(x.ctx, x.s.nc, x.s.stream())
		if err != nil {
			x.sendErr(CodeUpstreamUnreachable, fmt.Errorf("agent: %w", err))
			return
		}
		defer rcv.Close()
		x.sendAck(rcv.Subject())
		body = &streamedBody{r: rcv}
		if x.trailers != nil {
			body = &trailerBody{r: rcv, dst: x.trailers}
		}
	} else if len(x.inline) > 0 {
		body = bytes.NewReader(x.inline)
	}
	switch {
	case x.streamed:
	case x.ackDelay <= 0:
		x.sendAck("")
	default:
		// Built only if sent: usually the response goes first.
		x.ackTimer = time.AfterFunc(x.ackDelay, func() { x.sendAck("") })
		defer x.ackTimer.Stop()
	}
	req, err := x.outgoing(body)
	if err != nil {
		x.sendErr(httpx.CodeBadRequest, err)
		return
	}
	if x.trailers != nil && req.Body != nil {
		req.Trailer, req.ContentLength = x.trailers, -1
	}
	var resp *http.Response
	lean, replayable := false, false
	if x.s.lean != nil && !x.streamed && x.trailers == nil {
		lean, replayable = leanable(req)
	}
	if lean {
		resp, err = x.s.lean.roundTrip(x.ctx, req, x.inline, replayable)
	} else {
		resp, err = x.s.transport.RoundTrip(req)
	}
	if err != nil {
		if x.ctx.Err() == nil {
			x.s.log.Info("upstream unreachable", "err", err)
			x.sendErr(CodeUpstreamUnreachable, fmt.Errorf("%s %s: %w", x.head.Method, x.s.target.Redacted(), unwrapURLError(err)))
		}
		return
	}
	defer resp.Body.Close()
	x.respond(resp)
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// outgoing builds the request to the target: its base path joined with
// the relayed escaped path (escapes such as %2F kept), the query, the
// headers without hop-by-hop ones.
func (x *exchange) outgoing(body io.Reader) (*http.Request, error) {
	t := x.s.target
	// The caller confined the path already; an agent does not rely on it.
	rel, err := ConfinePath(x.head.Path)
	if err != nil {
		return nil, err
	}
	raw := strings.TrimSuffix(t.EscapedPath(), "/") + rel
	path, err := url.PathUnescape(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: path %q: %v", ErrBadRequest, x.head.Path, err)
	}
	u := *t
	u.Path, u.RawPath, u.RawQuery, u.Fragment = path, raw, x.head.Query, ""
	h := x.head.Header
	if h == nil {
		h = http.Header{}
	}
	RemoveHopByHop(h)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // no Go default User-Agent
	}
	req := &http.Request{
		Method: x.head.Method, URL: &u, Host: u.Host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
	if body != nil {
		if b, ok := body.(*streamedBody); ok {
			req.Body = b // a type bulkConn knows
		} else {
			req.Body = io.NopCloser(body)
		}
		req.ContentLength = x.head.Length
	}
	return req.WithContext(x.ctx), nil
}

// respond relays the target's response: inline when small and of known
// size, else as a stream the caller pulls.
func (x *exchange) respond(resp *http.Response) {
	RemoveHopByHop(resp.Header)
	x.respTr = resp.Trailer
	head := respHead{Status: resp.StatusCode, Header: resp.Header, Length: resp.ContentLength}
	noBody := x.head.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	var body io.Reader = resp.Body
	if noBody || (resp.ContentLength >= 0 && resp.ContentLength <= int64(x.s.cfg.InlineMax)) {
		var data []byte
		if !noBody && resp.ContentLength > 0 {
			data = make([]byte, resp.ContentLength)
			if _, err := io.ReadFull(resp.Body, data); err != nil {
				x.sendErr(CodeUpstreamUnreachable, fmt.Errorf("reading response: %w", err))
				return
			}
		}
		whole := noBody || int64(len(data)) == resp.ContentLength
		if whole {
			// Read to its end: the connection is free for the next
			// request before this response leaves.
			_ = resp.Body.Close()
		}
		m := x.msg(opResp)
		var err error
		if m.Data, err = head.encode(data); err != nil {
			x.sendErr(CodeUpstreamUnreachable, err)
			return
		}
		if len(m.Data) <= int(x.s.nc.MaxPayload())-4096 {
			x.waiting.Store(false)
			x.send(m)
			return
		}
		if whole {
			body = bytes.NewReader(data) // what is left to send is data
		} else {
			body = io.MultiReader(bytes.NewReader(data), resp.Body)
		}
	}
	x.stream(head, body, resp.Body)
}

// stream sends the head, waits for the caller's receiver and copies the
// body to it as it is read. src, the target's body, is closed once read to
// its end, before the stream's end is sent, so that its connection is free
// for the next request first.
func (x *exchange) stream(head respHead, body io.Reader, src io.Closer) {
	m := x.msg(opResp)
	m.Header.Set(hdrBody, bodyStream)
	var err error
	if m.Data, err = head.encode(nil); err != nil || len(m.Data) > int(x.s.nc.MaxPayload())-4096 {
		x.sendErr(CodeUpstreamUnreachable, fmt.Errorf("response head unusable (too large or malformed)"))
		return
	}
	x.send(m)
	var subj string
	var snd *natsio.Sender
	select {
	case subj = <-x.pull:
	case <-x.ctx.Done():
		return
	}
	snd, err = natsio.NewSender(x.ctx, x.s.nc, subj, x.s.stream())
	if err != nil {
		return
	}
	x.waiting.Store(false)
	x.send(x.msg(opStarted))
	buf := getBuf()
	defer putBuf(buf)
	for {
		n, rerr := body.Read(buf)
		if rerr == io.EOF {
			_ = src.Close()
			_ = closeStream(snd, x.respTr, buf[:n])
			return
		}
		if n > 0 {
			if _, err := snd.Write(buf[:n]); err != nil {
				_ = snd.CloseWithError("agent stopped")
				return // the caller is gone: run's deferred cancel ends the target request
			}
		}
		if rerr != nil {
			_ = snd.CloseWithError("upstream: " + rerr.Error())
			return
		}
	}
}
