//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package relay

import "net"

// canPeek: this platform cannot check an idle connection without reading
// from it (see idleAlive), so agents here use http.Transport.
const canPeek = false

type peeker struct{}

func newPeeker(net.Conn) *peeker { return nil }

func (*peeker) idleAlive() bool { return false }
