package gateway

import (
	"errors"
	"io"
	"net"
	"testing"
)

// TestHandBack: the listener yields its connection once, then ends
// Serve; closed before that, it closes the connection, so a connection
// handed back to a server that is shutting down is not left open.
func TestHandBack(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	l := &handBack{conn: a}
	if c, err := l.Accept(); err != nil || c != a {
		t.Fatalf("first Accept = %v, %v", c, err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Accept: %v, want net.ErrClosed", err)
	}
	if err := l.Close(); err != nil { // a is Serve's now: left open
		t.Fatal(err)
	}
	go func() { _, _ = a.Write([]byte("x")) }()
	if _, err := b.Read(make([]byte, 1)); err != nil {
		t.Fatalf("accepted connection closed by the listener: %v", err)
	}

	c, d := net.Pipe()
	l = &handBack{conn: c}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("unaccepted connection after Close: %v, want it closed", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}
