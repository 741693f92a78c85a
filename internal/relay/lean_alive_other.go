//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package relay

import "net"

// canPeek: this platform cannot check an idle connection without reading
// from it (see idleAlive), so agents here use http.Transport.
const canPeek = false

func idleAlive(net.Conn) bool { return false }
