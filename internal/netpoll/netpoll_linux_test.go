package netpoll_test

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/netpoll"
)

func fired(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: wait did not fire", what)
	}
}

func TestArmFiresOnDataAndHangup(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := netpoll.New()
	defer p.Close()
	server, client := pair(t)
	h, err := p.Register(server)
	if err != nil {
		t.Fatal(err)
	}
	c := make(chan struct{}, 1)
	signal := func() { c <- struct{}{} }
	if err := h.Arm(signal); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	fired(t, c, "data")
	buf := make([]byte, 8)
	if n, err := server.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	// Armed again with nothing to read, it waits for the next event: the
	// peer going away.
	if err := h.Arm(signal); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c:
		t.Fatal("fired with nothing to read")
	default:
	}
	client.Close()
	fired(t, c, "hangup")
	if _, err := server.Read(buf); err == nil {
		t.Fatal("read after hangup succeeded")
	}
	// Already readable (EOF) when armed: fires at once.
	if err := h.Arm(signal); err != nil {
		t.Fatal(err)
	}
	fired(t, c, "re-arm on a hung-up socket")
	h.Disarm()
	server.Close()
	if err := h.Arm(signal); !errors.Is(err, netpoll.ErrClosed) {
		t.Fatalf("Arm on a closed conn: %v, want ErrClosed", err)
	}
}

func TestDisarmAndClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := netpoll.New()
	server, client := pair(t)
	h, err := p.Register(server)
	if err != nil {
		t.Fatal(err)
	}
	c := make(chan struct{}, 2)
	if err := h.Arm(func() { c <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	h.Disarm()
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// Armed on another socket that becomes readable, the poller still
	// runs, so the disarmed one had its chance to fire.
	s2, c2 := pair(t)
	h2, err := p.Register(s2)
	if err != nil {
		t.Fatal(err)
	}
	other := make(chan struct{}, 1)
	if err := h2.Arm(func() { other <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	c2.Write([]byte("y"))
	fired(t, other, "second socket")
	select {
	case <-c:
		t.Fatal("a disarmed wait fired")
	default:
	}
	// Close with a wait armed: the poller's goroutine ends (goleak), the
	// wait never fires, and Arm refuses.
	if err := h.Arm(func() { c <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Arm(func() {}); !errors.Is(err, netpoll.ErrClosed) {
		t.Fatalf("Arm after Close: %v", err)
	}
	if _, err := p.Register(s2); !errors.Is(err, netpoll.ErrClosed) {
		t.Fatalf("Register after Close: %v", err)
	}
}

// TestCloseThenDisarm: a wait armed on a connection that is then closed
// never fires (the socket left the set); Disarm after the close hands its
// callback back so the owner can run it, and Arm refuses from then on.
func TestCloseThenDisarm(t *testing.T) {
	p := netpoll.New()
	defer p.Close()
	server, _ := pair(t)
	h, err := p.Register(server)
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	if err := h.Arm(func() { ran = true }); err != nil {
		t.Fatal(err)
	}
	server.Close()
	f := h.Disarm()
	if f == nil {
		t.Fatal("Disarm after close returned no callback")
	}
	f()
	if !ran {
		t.Fatal("callback not handed back")
	}
	if h.Disarm() != nil {
		t.Fatal("second Disarm returned a callback")
	}
	if err := h.Arm(func() {}); !errors.Is(err, netpoll.ErrClosed) {
		t.Fatalf("Arm after close: %v", err)
	}
}
