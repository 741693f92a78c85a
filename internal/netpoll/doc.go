// Package netpoll waits for many idle sockets with one goroutine.
//
// A connection that sits idle for most of its life (a parked Megaphone
// poll, an idle middleman WebSocket) would otherwise hold a goroutine
// blocked in Read, with its stack, for all that time. A [Poller] instead
// keeps the socket in one epoll set (Linux) and runs a callback on a new
// goroutine once the socket has bytes to read, was shut down by the peer or
// failed; the callback then reads as usual through the net.Conn, whose
// deadlines and close keep working.
//
// On other systems, and for connections without a socket underneath (TLS,
// in-memory pipes), [Poller.Register] returns [ErrUnsupported] and the
// caller keeps its goroutine.
package netpoll

import (
	"errors"
	"net"
)

// ErrUnsupported is returned by [Poller.Register] for a connection it
// cannot watch; the caller then waits with a goroutine of its own.
var ErrUnsupported = errors.New("netpoll: connection cannot be polled")

// ErrClosed is returned once the poller or the connection was closed.
var ErrClosed = errors.New("netpoll: closed")

// Wrapper is a net.Conn that passes every read and write straight to the
// socket it wraps, buffering nothing (a connection counted by a listener,
// say): [Poller.Register] watches that socket. A wrapper that buffers (TLS)
// must not implement it.
type Wrapper interface {
	Socket() net.Conn
}
