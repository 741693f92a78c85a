package netpoll_test

import (
	"errors"
	"net"
	"testing"

	"github.com/switchboard/switchboard/internal/netpoll"
)

// TestUnsupported: a connection without a socket underneath (net.Pipe)
// is refused on every system, so its owner keeps its own goroutine.
func TestUnsupported(t *testing.T) {
	p := netpoll.New()
	defer p.Close()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := p.Register(a); !errors.Is(err, netpoll.ErrUnsupported) {
		t.Fatalf("Register(net.Pipe) = %v, want ErrUnsupported", err)
	}
}

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return server, client
}
