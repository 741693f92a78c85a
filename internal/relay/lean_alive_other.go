//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package relay

import "net"

// idleAlive cannot peek on this platform: a request that cannot be
// retried gets a new connection.
func idleAlive(net.Conn) bool { return false }
