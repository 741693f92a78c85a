package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/switchboard/switchboard/internal/natsio"
)

// Upgraded connections (Connection: Upgrade + Upgrade: <protocol>).
//
// The caller marks the open message with Sb-Relay-Upgrade: <protocol>;
// the agent writes the request to the target with Connection: Upgrade and
// that Upgrade header on a connection of its own. Any answer other than
// 101 is relayed as an ordinary response. On 101 the agent opens a natsio
// receiver for the caller's bytes and answers "resp" (status 101, body
// "stream", Sb-Relay-Up: its receiver, Sb-Relay-Upgrade: the target's
// protocol); the caller pulls the agent's bytes as for a streamed body and
// connects a natsio sender to the agent's receiver. From then on the
// connection is two flow-controlled natsio streams, one each way: EOF of
// one is a half-close, an error or a lost peer (natsio heartbeats) cuts
// both.

const (
	hdrUpgrade = "Sb-Relay-Upgrade" // open: the caller's Upgrade; resp 101: the target's
	hdrUp      = "Sb-Relay-Up"      // resp 101: the agent's receiver of the caller's bytes
)

// maxUpgradeLen bounds an Upgrade header value relayed.
const maxUpgradeLen = 256

// validUpgrade reports whether v can be relayed as an Upgrade value:
// printable ASCII, at most maxUpgradeLen bytes.
func validUpgrade(v string) bool {
	if v == "" || len(v) > maxUpgradeLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// UpgradeProtocol returns the protocol an HTTP/1.1 request asks to switch
// to (Connection: Upgrade and Upgrade: <protocol>), or "" for an ordinary
// request. HTTP/2 requests never upgrade this way.
func UpgradeProtocol(r *http.Request) string {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 || !httpguts.HeaderValuesContainsToken(r.Header.Values("Connection"), "upgrade") {
		return ""
	}
	return strings.Join(r.Header.Values("Upgrade"), ", ")
}

// Upgraded is the body of a relayed 101 response: the full-duplex byte
// stream to the target. Read returns the target's bytes, Write sends
// bytes to it; CloseWrite half-closes (the target reads EOF); Close cuts
// both directions.
type Upgraded struct {
	x    *call
	r    *natsio.Receiver
	s    *natsio.Sender
	once sync.Once
	// Protocol is the protocol the target switched to (its Upgrade header).
	Protocol string
}

var _ io.ReadWriteCloser = (*Upgraded)(nil)

func (u *Upgraded) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	u.x.c.metrics.upgradeBytes("down", n)
	return n, mapStreamErr(u.x, err)
}

func (u *Upgraded) Write(p []byte) (int, error) {
	n, err := u.s.Write(p)
	u.x.c.metrics.upgradeBytes("up", n)
	if err != nil {
		if errors.Is(err, natsio.ErrPeerLost) {
			return n, fmt.Errorf("%w: %v", ErrAgentLost, err)
		}
		if u.x.ctx.Err() != nil {
			return n, context.Cause(u.x.ctx)
		}
	}
	return n, err
}

// CloseWrite ends the caller's direction cleanly; it waits until the
// agent read everything written.
func (u *Upgraded) CloseWrite() error { return streamErr(u.s.Close()) }

// Close cuts the connection both ways.
func (u *Upgraded) Close() error {
	u.once.Do(func() {
		_ = u.s.CloseWithError("caller closed")
		u.x.close()
	})
	return nil
}

// mapStreamErr maps a natsio read error of an exchange.
func mapStreamErr(x *call, err error) error {
	switch {
	case err == nil, err == io.EOF:
		return err
	case errors.Is(err, natsio.ErrPeerLost):
		return fmt.Errorf("%w: %v", ErrAgentLost, err)
	}
	var re *natsio.RemoteError
	if errors.As(err, &re) {
		return fmt.Errorf("%w: %s", ErrUpstreamBroken, re.Reason)
	}
	if x.ctx.Err() != nil {
		return context.Cause(x.ctx)
	}
	return err
}

// upgraded connects the caller's sender to the agent's receiver and
// returns the 101 response's body.
func (x *call) upgraded() (*Upgraded, error) {
	s, err := natsio.NewSender(x.ctx, x.c.nc, x.upSubj, upgradeStream(x.stream()))
	if err != nil {
		return nil, fmt.Errorf("%w: upgraded stream: %v", ErrAgentLost, err)
	}
	return &Upgraded{x: x, r: x.rcv, s: s, Protocol: x.upProto}, nil
}

// Close reasons of upgraded connections, the values of the "reason"
// label of switchboard_relay_upgraded_closed_total.
const (
	CloseNormal   = "normal"     // both sides ended their direction
	CloseCaller   = "caller"     // the caller's connection broke
	CloseUpstream = "upstream"   // the target's side broke or the agent stopped
	CloseLost     = "agent_lost" // the agent went silent
	CloseIdle     = "idle"       // relay.upgrade_idle_timeout passed
	CloseShutdown = "shutdown"   // the gateway or agent client shut down
)

// acquireUpgrade counts an upgraded connection against MaxUpgraded.
func (c *Client) acquireUpgrade() bool {
	if c.upgrades.Add(1) > int64(c.cfg.MaxUpgraded) {
		c.upgrades.Add(-1)
		return false
	}
	return true
}

func (c *Client) releaseUpgrade() { c.upgrades.Add(-1) }

// Upgrades is the number of upgraded connections open or being set up.
func (c *Client) Upgrades() int { return int(c.upgrades.Load()) }

// forwardUpgrade relays an upgrade request: an ordinary answer is written
// as a response; on 101 the caller's connection is hijacked and joined to
// the target's until either side closes or ctx ends.
func (c *Client) forwardUpgrade(ctx context.Context, w http.ResponseWriter, r *http.Request, upstream string, req *Request) error {
	if r.ContentLength != 0 {
		err := fmt.Errorf("%w: an upgrade request cannot carry a body", ErrBadRequest)
		c.metrics.Result(resultOf(err))
		WriteError(w, err)
		return err
	}
	if !validUpgrade(req.Upgrade) {
		err := fmt.Errorf("%w: Upgrade header must be printable ASCII of at most %d bytes", ErrBadRequest, maxUpgradeLen)
		c.metrics.Result(resultOf(err))
		WriteError(w, err)
		return err
	}
	if !c.acquireUpgrade() {
		err := fmt.Errorf("%w: %d upgraded connections open, the most relay.max_upgraded allows", ErrNoAgent, c.cfg.MaxUpgraded)
		c.metrics.Result(resultOf(err))
		WriteError(w, err)
		return err
	}
	defer c.releaseUpgrade()
	req.Body, req.ContentLength = nil, 0
	// net/http cancels the request's context when the client half-closes
	// a hijacked connection: the upgraded connection outlives it. Until
	// the hijack ctx's end cancels the exchange; afterwards only the end
	// of the connection, the shutdown channel and Close do.
	uctx, ucancel := context.WithCancel(context.WithoutCancel(ctx))
	defer ucancel()
	stopReq := context.AfterFunc(ctx, ucancel)
	defer stopReq()
	resp, err := c.Do(uctx, upstream, req)
	if err != nil {
		c.metrics.Result(resultOf(err))
		c.log.Debug("relay upgrade failed", "upstream", upstream, "err", err)
		WriteError(w, err)
		return err
	}
	up, ok := resp.Body.(*Upgraded)
	if !ok {
		return c.writeResponse(ctx, w, http.NewResponseController(w), upstream, resp)
	}
	defer up.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		err = fmt.Errorf("%w: connection cannot be taken over: %v", ErrBadRequest, err)
		c.metrics.Result(resultOf(err))
		WriteError(w, err)
		return err
	}
	defer conn.Close()
	if !stopReq() {
		c.metrics.Result(ResultCanceled)
		return ctx.Err()
	}
	_ = conn.SetDeadline(time.Time{})
	if err := writeSwitch(brw.Writer, resp.Header, up.Protocol); err != nil {
		c.metrics.Result(ResultAborted)
		c.metrics.upgradeClosed(CloseCaller)
		return err
	}
	c.metrics.Result(ResultOK)
	c.metrics.upgradeOpen(1)
	defer c.metrics.upgradeOpen(-1)
	reason := c.join(shutdownFrom(ctx), conn, brw.Reader, up)
	c.metrics.upgradeClosed(reason)
	c.log.Debug("upgraded connection closed", "upstream", upstream, "reason", reason)
	return nil
}

// writeSwitch writes the 101 head to the hijacked connection.
func writeSwitch(w *bufio.Writer, h http.Header, protocol string) error {
	_, _ = w.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h = h.Clone()
	RemoveHopByHop(h)
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", protocol)
	if err := h.Write(w); err != nil {
		return err
	}
	_, _ = w.WriteString("\r\n")
	return w.Flush()
}

// join pumps bytes both ways between the caller's connection (reading
// from br, which holds what the client sent after its request) and the
// upgraded stream, and returns why it ended.
func (c *Client) join(shutdown <-chan struct{}, conn net.Conn, br *bufio.Reader, up *Upgraded) string {
	var (
		mu     sync.Mutex
		reason string
		cut    = make(chan struct{})
		once   sync.Once
	)
	end := func(why string) {
		mu.Lock()
		if reason == "" {
			reason = why
		}
		mu.Unlock()
		once.Do(func() { close(cut) })
	}
	var last atomic.Int64
	touch := func() { last.Store(time.Now().UnixNano()) }
	touch()
	var wg sync.WaitGroup
	wg.Add(2)
	upDone, downDone := make(chan struct{}), make(chan struct{})
	go func() { // caller → target
		defer wg.Done()
		defer close(upDone)
		cb := newCopyBuf()
		defer cb.release()
		for {
			n, rerr := br.Read(cb.cur)
			if n > 0 {
				touch()
				if _, err := up.Write(cb.cur[:n]); err != nil {
					c.log.Debug("upgraded: write to agent", "err", err)
					end(closeReason(err))
					return
				}
				cb.next(n)
			}
			if rerr == io.EOF {
				if err := up.CloseWrite(); err != nil {
					c.log.Debug("upgraded: half-close to agent", "err", err)
					end(closeReason(err))
				}
				return
			}
			if rerr != nil {
				c.log.Debug("upgraded: read from caller", "err", rerr)
				end(CloseCaller)
				return
			}
		}
	}()
	go func() { // target → caller: each piece as it came off NATS, no buffer held
		defer wg.Done()
		defer close(downDone)
		sw := &streamWriter{w: conn, wrote: func(n int) {
			touch()
			c.metrics.upgradeBytes("down", n)
		}}
		_, rerr := up.r.WriteTo(sw)
		switch {
		case sw.err != nil:
			end(CloseCaller)
		case rerr == nil:
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			} else {
				end(CloseNormal)
			}
		default:
			rerr = mapStreamErr(up.x, rerr)
			c.log.Debug("upgraded: read from agent", "err", rerr)
			end(closeReason(rerr))
		}
	}()
	var idle <-chan time.Time
	if t := c.cfg.UpgradeIdleTimeout; t > 0 {
		tick := time.NewTicker(min(t/4+time.Millisecond, time.Second))
		defer tick.Stop()
		idle = tick.C
	}
	both := make(chan struct{})
	go func() { <-upDone; <-downDone; close(both) }()
wait:
	for {
		select {
		case <-both:
			end(CloseNormal)
			break wait
		case <-cut:
			break wait
		case <-shutdown:
			end(CloseShutdown)
			break wait
		case <-c.closing:
			end(CloseShutdown)
			break wait
		case <-idle:
			if time.Since(time.Unix(0, last.Load())) > c.cfg.UpgradeIdleTimeout {
				end(CloseIdle)
				break wait
			}
		}
	}
	_ = conn.Close()
	_ = up.Close()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return reason
}

// closeReason is the close reason of an upgraded stream that failed with
// err.
func closeReason(err error) string {
	switch {
	case errors.Is(err, ErrAgentLost):
		return CloseLost
	case errors.Is(err, ErrUpstreamBroken), errors.Is(err, natsio.ErrCanceled):
		return CloseUpstream
	}
	return CloseCaller
}

type shutdownKey struct{}

// WithShutdown returns a copy of ctx that tells [Client.Forward] to close
// the upgraded connections it joined once stop is closed (the gateway's
// shutdown). A hijacked connection outlives its request's context, so
// that context's end does not close it.
func WithShutdown(ctx context.Context, stop <-chan struct{}) context.Context {
	return context.WithValue(ctx, shutdownKey{}, stop)
}

// shutdownFrom returns the channel ctx carries, or nil (never).
func shutdownFrom(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(shutdownKey{}).(<-chan struct{})
	return ch
}
