package relay

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/switchboard/switchboard/internal/natsio"
)

// streamedBody is the agent's request body streamed from the caller (no
// trailers declared). Besides Read, the target connection's ReadFrom
// (see bulkConn) takes its pieces as they arrived from NATS.
type streamedBody struct{ r *natsio.Receiver }

func (b *streamedBody) Read(p []byte) (int, error) { return b.r.Read(p) }

// Close does nothing: the exchange closes the receiver when it ends, as
// for the other bodies (http.Transport closes a request body early on
// errors, which must not cancel the stream on its own).
func (b *streamedBody) Close() error { return nil }

// bulkConn is a plain-TCP connection to the target. http.Transport writes
// a request body of known length with io.Copy(conn, io.LimitReader(body,
// n)), which for a streamedBody would copy every byte once more through a
// 32 KiB buffer into as many write calls; bulkConn's ReadFrom writes each
// piece received from NATS (up to the limit) as it is instead. Any other
// reader takes the connection's own path.
type bulkConn struct{ net.Conn }

func (c *bulkConn) ReadFrom(r io.Reader) (int64, error) {
	lr, ok := r.(*io.LimitedReader)
	if !ok {
		return io.Copy(c.Conn, r)
	}
	b, ok := lr.R.(*streamedBody)
	if !ok {
		return io.Copy(c.Conn, r)
	}
	n, err := b.r.WriteToN(c.Conn, lr.N)
	lr.N -= n
	if err == io.EOF {
		// Shorter than declared: http.Transport reports the mismatch.
		err = nil
	}
	return n, err
}

// CloseWrite half-closes a connection that supports it (TCP); upgraded
// connections pass a caller's EOF on with it.
func (c *bulkConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// bulkDial wraps dial's connections in bulkConn.
func bulkDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &bulkConn{Conn: c}, nil
	}
}
