//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package relay

import (
	"net"
	"syscall"
)

// canPeek: idleAlive can check an idle connection here.
const canPeek = true

// peeker checks one connection; it is made once per connection, so a
// check allocates nothing.
type peeker struct {
	rc    syscall.RawConn
	fn    func(fd uintptr) bool
	alive bool
	b     [1]byte
}

func newPeeker(c net.Conn) *peeker {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &peeker{rc: rc}
	p.fn = func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		p.alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true
	}
	return p
}

// idleAlive reports whether a kept-alive connection may carry the next
// request: the target has neither closed it nor sent anything unasked.
// It peeks without blocking, one system call.
func (p *peeker) idleAlive() bool {
	if p == nil {
		return false
	}
	p.alive = false
	err := p.rc.Read(p.fn)
	return err == nil && p.alive
}
