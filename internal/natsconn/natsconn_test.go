package natsconn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natstest"
)

// TestConnectReturnsWhenClosedForGood: credentials refused twice make
// nats.go close the connection; Connect reports it at once instead of
// waiting for its context, and the caller's ClosedHandler still runs.
func TestConnectReturnsWhenClosedForGood(t *testing.T) {
	s := natstest.RunServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "u", Password: "right"}}
	})
	closed := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	nc, err := Connect(ctx, s.URL(), nats.UserInfo("u", "wrong"), nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err == nil {
		nc.Close()
		t.Fatal("connected with a wrong password")
	}
	if !errors.Is(err, nats.ErrConnectionClosed) || ctx.Err() != nil {
		t.Fatalf("Connect = %v after %s, want ErrConnectionClosed before the context ended", err, time.Since(began))
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the caller's ClosedHandler did not run")
	}
}

// TestConnectKeepsHandlers: the caller's ConnectHandler runs too.
func TestConnectKeepsHandlers(t *testing.T) {
	s := natstest.RunServer(t, nil)
	connected := make(chan struct{}, 1)
	nc, err := Connect(context.Background(), s.URL(), nats.ConnectHandler(func(*nats.Conn) { connected <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	select {
	case <-connected:
	case <-time.After(5 * time.Second):
		t.Fatal("the caller's ConnectHandler did not run")
	}
}
