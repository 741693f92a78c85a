//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package relay

import (
	"net"
	"syscall"
)

// canPeek: idleAlive can check an idle connection here.
const canPeek = true

// idleAlive reports whether a kept-alive connection may carry the next
// request: the target has neither closed it nor sent anything unasked.
// It peeks without blocking, one system call.
func idleAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && alive
}
