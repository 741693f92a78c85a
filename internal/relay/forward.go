package relay

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/httpx"
)

// Forward relays the HTTP request r to upstream with the escaped path and
// writes the response to w: the head once it arrives, then the body,
// flushed chunk by chunk as the agent streams it. Errors before the head
// are written as {"code","message"} (see [HTTPError]) and returned. If ctx
// ends during the body (client gone, shutdown) the response ends there; if
// the stream breaks otherwise, the response is aborted with
// panic(http.ErrAbortHandler), as httputil.ReverseProxy does, so the
// client sees a failed response and not a short one.
func (c *Client) Forward(ctx context.Context, w http.ResponseWriter, r *http.Request, upstream, path string) error {
	return c.forward(ctx, w, r, upstream, path, TrustedProxiesFrom(r.Context()))
}

// forward is [Client.Forward] with the trusted proxies given, which spares
// the gateway's ingress a copy of the request to carry them in its context.
func (c *Client) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, upstream, path string, trusted *TrustedProxies) error {
	path, err := ConfinePath(path)
	if err != nil {
		c.metrics.Result(resultOf(err))
		WriteError(w, err)
		return err
	}
	rc := http.NewResponseController(w)
	proto := UpgradeProtocol(r) // before the hop-by-hop headers go
	req := &Request{
		Method:   r.Method,
		Path:     path,
		RawQuery: r.URL.RawQuery,
		// r is the relay's own: its headers are changed in place, not
		// copied.
		Header: outgoingHeader(r, r.Header, trusted),
	}
	var body *eofReader
	if r.Body != nil && r.Body != http.NoBody {
		body = &eofReader{r: r.Body}
		req.Body, req.ContentLength = body, r.ContentLength
		req.Interrupt = func() { _ = rc.SetReadDeadline(time.Now()) }
		if len(r.Trailer) > 0 {
			req.Trailer = r.Trailer
		}
	}
	if proto != "" {
		req.Upgrade = proto
		return c.forwardUpgrade(ctx, w, r, upstream, req)
	}
	resp, err := c.Do(ctx, upstream, req)
	if err != nil {
		c.metrics.Result(resultOf(err))
		c.log.Debug("relay failed", "upstream", upstream, "err", err)
		// The server discards what is left of the request body before it
		// answers; an interrupted read left a deadline in the past.
		_ = rc.SetReadDeadline(time.Now().Add(time.Second))
		WriteError(w, err)
		return err
	}
	if req.Body != nil && !body.done.Load() && r.ProtoMajor == 1 {
		// The response starts before the request body was read to its
		// end: let reads and writes interleave. net/http (Go 1.26) cannot
		// reuse such an HTTP/1.x connection safely (its discard of the
		// unread rest after the handler races its next read and panics),
		// so it closes. HTTP/2 streams interleave anyway, and there
		// "Connection: close" would make the server shut the whole
		// connection down (GOAWAY) after every such request.
		_ = rc.EnableFullDuplex()
		w.Header().Set("Connection", "close")
	}
	return c.writeResponse(ctx, w, rc, upstream, resp)
}

// writeResponse writes a relayed response to w: its head, then its body.
func (c *Client) writeResponse(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, upstream string, resp *Response) error {
	defer resp.Body.Close()
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	if resp.ContentLength >= 0 {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	} else {
		h.Del("Content-Length")
	}
	w.WriteHeader(resp.StatusCode)
	if _, inline := resp.Body.(*inlineBody); !inline {
		_ = rc.Flush() // a stream's head reaches the client before its first chunk
	}
	if err := copyBody(w, rc, resp.Body); err != nil {
		if ctx.Err() != nil {
			c.metrics.Result(ResultCanceled)
			return ctx.Err()
		}
		c.metrics.Result(ResultAborted)
		c.log.Warn("relay stream broke", "upstream", upstream, "err", err)
		panic(http.ErrAbortHandler)
	}
	for name, values := range resp.Trailer {
		h[http.TrailerPrefix+name] = values
	}
	c.metrics.Result(ResultOK)
	return nil
}

// copyBody copies a response body to w. A streamed body's pieces are
// flushed as they arrive when no further piece is already there, so that
// SSE and other streams reach the client at once; the last one is not
// (the end of the response writes it).
func copyBody(w io.Writer, rc *http.ResponseController, body io.Reader) error {
	switch b := body.(type) {
	case *inlineBody:
		_, err := b.WriteTo(w)
		return err
	case *streamBody:
		return b.writeTo(w, rc.Flush)
	}
	buf := getBuf()
	defer putBuf(buf)
	_, rerr, werr := httpx.CopyFlush(w, rc.Flush, body, buf)
	return errors.Join(werr, rerr)
}

// eofReader records that its reader returned an error (io.EOF included):
// the request body was read to its end.
type eofReader struct {
	r    io.Reader
	done atomic.Bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.done.Store(true)
	}
	return n, err
}
