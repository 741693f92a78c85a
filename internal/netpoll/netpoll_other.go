//go:build !linux

package netpoll

import "net"

// Poller is a stand-in: on this system every connection keeps its own
// goroutine.
type Poller struct{}

// New returns a poller that supports no connection.
func New() *Poller { return &Poller{} }

// Handle is never returned on this system.
type Handle struct{}

// Register always returns [ErrUnsupported] on this system.
func (p *Poller) Register(net.Conn) (*Handle, error) { return nil, ErrUnsupported }

// Arm is never reached on this system.
func (h *Handle) Arm(func()) error { return ErrUnsupported }

// Disarm is never reached on this system.
func (h *Handle) Disarm() func() { return nil }

// Close does nothing.
func (p *Poller) Close() error { return nil }
