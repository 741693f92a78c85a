package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/natsio"
)

// errUpstreamClosed ends an upgraded exchange whose target connection
// broke.
var errUpstreamClosed = errors.New("relay: upstream connection broke")

// runUpgrade serves an upgrade request (see upgrade.go): it writes the
// request to the target on a connection of its own, relays an ordinary
// answer as usual, and on 101 joins the target's connection to the
// caller's two streams until both directions ended or one broke.
func (x *exchange) runUpgrade() {
	ack := x.msg(opAck)
	ack.Header.Set(hdrTry, x.try)
	x.send(ack)
	req, err := x.outgoing(nil)
	if err != nil {
		x.sendErr(httpx.CodeBadRequest, err)
		return
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", x.upgrade)
	conn, err := x.s.dialTarget(x.ctx)
	if err != nil {
		if x.ctx.Err() == nil {
			x.s.log.Info("upstream unreachable", "err", err)
			x.sendErr(CodeUpstreamUnreachable, fmt.Errorf("%s %s: %w", x.head.Method, x.s.target.Redacted(), err))
		}
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(x.ctx, func() { _ = conn.Close() })
	defer stop()
	br := bufio.NewReader(conn)
	var resp *http.Response
	if err = req.Write(conn); err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	if err != nil {
		if x.ctx.Err() == nil {
			x.sendErr(CodeUpstreamUnreachable, fmt.Errorf("%s %s: %w", x.head.Method, x.s.target.Redacted(), err))
		}
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		x.respond(resp)
		return
	}
	proto := resp.Header.Get("Upgrade")
	if !validUpgrade(proto) {
		x.sendErr(CodeUpstreamUnreachable, fmt.Errorf("target switched protocols without a usable Upgrade header"))
		return
	}
	rcv, err := natsio.NewReceiver(x.ctx, x.s.nc, upgradeStream(x.s.stream()))
	if err != nil {
		x.sendErr(CodeUpstreamUnreachable, fmt.Errorf("agent: %w", err))
		return
	}
	defer rcv.Close()
	RemoveHopByHop(resp.Header)
	head := respHead{Status: http.StatusSwitchingProtocols, Header: resp.Header, Length: -1}
	m := x.msg(opResp)
	m.Header.Set(hdrBody, bodyStream)
	m.Header.Set(hdrUp, rcv.Subject())
	m.Header.Set(hdrUpgrade, proto)
	if m.Data, err = head.encode(nil); err != nil || len(m.Data) > int(x.s.nc.MaxPayload())-4096 {
		x.sendErr(CodeUpstreamUnreachable, fmt.Errorf("response head unusable (too large or malformed)"))
		return
	}
	x.send(m)
	var subj string
	select {
	case subj = <-x.pull:
	case <-x.ctx.Done():
		return
	}
	snd, err := natsio.NewSender(x.ctx, x.s.nc, subj, upgradeStream(x.s.stream()))
	if err != nil {
		return
	}
	x.waiting.Store(false)
	x.send(x.msg(opStarted))
	x.join(conn, br, rcv, snd)
}

// join pumps the target's bytes (br, then conn) to snd and rcv's bytes to
// conn. A clean end of one direction half-closes it; a failure cuts both.
func (x *exchange) join(conn net.Conn, br *bufio.Reader, rcv *natsio.Receiver, snd *natsio.Sender) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // target → caller
		defer wg.Done()
		cb := newCopyBuf()
		defer cb.release()
		for {
			n, rerr := br.Read(cb.cur)
			if n > 0 {
				if _, err := snd.Write(cb.cur[:n]); err != nil {
					_ = snd.CloseWithError("agent stopped")
					x.cancel(err)
					return
				}
				cb.next(n)
			}
			if rerr == io.EOF {
				if err := snd.Close(); err != nil {
					x.cancel(err)
				}
				return
			}
			if rerr != nil {
				_ = snd.CloseWithError("upstream: connection broke")
				x.cancel(errUpstreamClosed)
				return
			}
		}
	}()
	go func() { // caller → target: each piece as it came off NATS, no buffer held
		defer wg.Done()
		sw := &streamWriter{w: conn}
		_, rerr := rcv.WriteTo(sw)
		switch {
		case sw.err != nil:
			x.cancel(errUpstreamClosed)
		case rerr == nil:
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		default:
			x.cancel(rerr)
		}
	}()
	wg.Wait()
}

// dialTarget connects to the target for an upgrade request: TCP, or TLS
// with the transport's TLS settings for an https target, speaking
// HTTP/1.1 (an upgrade does not exist in HTTP/2).
func (s *Server) dialTarget(ctx context.Context) (net.Conn, error) {
	t := s.target
	addr := targetAddr(t)
	dial := s.dial
	var tlsConf *tls.Config
	if ht, ok := s.transport.(*http.Transport); ok {
		if ht.DialContext != nil {
			dial = ht.DialContext
		}
		if ht.TLSClientConfig != nil {
			tlsConf = ht.TLSClientConfig.Clone()
		}
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil || t.Scheme != "https" {
		return conn, err
	}
	if tlsConf == nil {
		tlsConf = &tls.Config{}
	}
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = t.Hostname()
	}
	tlsConf.NextProtos = []string{"http/1.1"}
	tc := tls.Client(conn, tlsConf)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return tc, nil
}
