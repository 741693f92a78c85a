//go:build !linux

package netpoll_test

import (
	"errors"
	"testing"

	"github.com/switchboard/switchboard/internal/netpoll"
)

// TestUnsupportedOffLinux: without epoll a TCP connection is refused too,
// so parked polls and idle WebSockets keep their goroutine.
func TestUnsupportedOffLinux(t *testing.T) {
	p := netpoll.New()
	defer p.Close()
	server, _ := pair(t)
	if _, err := p.Register(server); !errors.Is(err, netpoll.ErrUnsupported) {
		t.Fatalf("Register(TCP) = %v, want ErrUnsupported", err)
	}
}
