// Package natsconn builds NATS client connections the way every Switchboard
// binary wants them: authenticated, reconnecting forever, and logging
// connection state changes.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Auth holds client credentials; at most one method should be set.
type Auth struct {
	Creds    string
	Token    string
	User     string
	Password string
}

// ErrAuthConflict is returned when more than one auth method is configured.
var ErrAuthConflict = errors.New("natsconn: set only one of creds, token, user/password")

// Options returns connect options: name, auth, infinite reconnects with
// jittered back-off, and state changes logged through logger.
func Options(name string, auth Auth, logger *slog.Logger) ([]nats.Option, error) {
	n := 0
	for _, set := range []bool{auth.Creds != "", auth.Token != "", auth.User != "" || auth.Password != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, ErrAuthConflict
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(8 << 20),
		nats.PingInterval(20 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			logger.Warn("nats async error", "subject", subj, "err", err)
		}),
	}
	switch {
	case auth.Creds != "":
		opts = append(opts, nats.UserCredentials(auth.Creds))
	case auth.Token != "":
		opts = append(opts, nats.Token(auth.Token))
	case auth.User != "" || auth.Password != "":
		opts = append(opts, nats.UserInfo(auth.User, auth.Password))
	}
	return opts, nil
}

// Connect dials urls (comma-separated) and waits until the first connection
// is up, the connection closes for good (say, its credentials are refused
// twice), a TLS failure retrying cannot cure (the server's certificate does
// not verify, ours is refused, TLS required on one side only), or ctx
// ends. Reconnects continue forever afterwards. A ConnectHandler,
// ClosedHandler or ReconnectErrHandler among opts still runs.
func Connect(ctx context.Context, urls string, opts ...nats.Option) (*nats.Conn, error) {
	connected := make(chan struct{}, 1)
	closed := make(chan struct{})
	refused := make(chan error, 1)
	var closeOnce sync.Once
	opts = append(opts, func(o *nats.Options) error {
		onConnect, onClosed, onErr := o.ConnectedCB, o.ClosedCB, o.ReconnectErrCB
		o.ReconnectErrCB = func(nc *nats.Conn, err error) {
			if permanent(err) {
				select {
				case refused <- err:
				default:
				}
			}
			if onErr != nil {
				onErr(nc, err)
			}
		}
		o.ConnectedCB = func(nc *nats.Conn) {
			select {
			case connected <- struct{}{}:
			default:
			}
			if onConnect != nil {
				onConnect(nc)
			}
		}
		o.ClosedCB = func(nc *nats.Conn) {
			closeOnce.Do(func() { close(closed) })
			if onClosed != nil {
				onClosed(nc)
			}
		}
		return nil
	})
	nc, err := nats.Connect(strings.TrimSpace(urls), opts...)
	if err != nil {
		return nil, fmt.Errorf("natsconn: connect %s: %w", urls, err)
	}
	return waitConnected(ctx, nc, urls, connected, closed, refused)
}

// waitConnected waits for Connect's first connection.
func waitConnected(ctx context.Context, nc *nats.Conn, urls string, connected, closed chan struct{}, refused chan error) (*nats.Conn, error) {
	if nc.IsConnected() {
		return nc, nil
	}
	select {
	case <-connected:
		return nc, nil
	case <-closed:
		return nil, fmt.Errorf("natsconn: connect %s: %w: %v", urls, nats.ErrConnectionClosed, nc.LastError())
	case err := <-refused:
		if nc.IsConnected() { // a later server of the list took it
			return nc, nil
		}
		nc.Close()
		return nil, fmt.Errorf("natsconn: connect %s: %w", urls, explain(err))
	case <-ctx.Done():
		nc.Close()
		return nil, fmt.Errorf("natsconn: connect %s: %w", urls, ctx.Err())
	}
}

// Drain drains nc (subscriptions end after their pending messages,
// publishes are flushed) and waits until it is closed, or closes it when
// ctx ends first. It keeps nc's own closed handler working: it waits by
// polling, not by replacing the handler.
func Drain(ctx context.Context, nc *nats.Conn) {
	if nc == nil || nc.IsClosed() {
		return
	}
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !nc.IsClosed() {
		select {
		case <-ctx.Done():
			nc.Close()
			return
		case <-tick.C:
		}
	}
}
