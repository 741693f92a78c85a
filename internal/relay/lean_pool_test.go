//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package relay

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"
)

// TestLeanPool: the pool keeps at most maxIdle connections, hands back the
// most recent one, closes the expired ones, and after closeIdle(true)
// closes what it is given.
func TestLeanPool(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	u, _ := url.Parse("http://" + ln.Addr().String())
	l := newLeanClient(u, (&net.Dialer{}).DialContext, 2, 0)
	if l == nil || l.maxHead <= 0 {
		t.Fatalf("lean client for %s: %+v", u, l)
	}
	var conns []*leanConn
	for range 3 {
		pc, err := l.get(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if pc.reused {
			t.Fatal("a new connection marked reused")
		}
		conns = append(conns, pc)
	}
	for _, pc := range conns {
		l.put(pc)
	}
	if len(l.idle) != 2 {
		t.Fatalf("%d idle, want 2", len(l.idle))
	}
	if !closed(conns[2]) {
		t.Fatal("the connection beyond maxIdle is open")
	}
	pc, _ := l.get(context.Background(), false)
	if pc != conns[1] || !pc.reused {
		t.Fatal("get did not return the most recently used connection")
	}
	l.put(pc)
	l.idle[0].idleAt = time.Now().Add(-2 * l.idleTimeout)
	l.closeExpired(time.Now())
	if len(l.idle) != 1 || l.idle[0] != conns[1] || !closed(conns[0]) {
		t.Fatalf("after closeExpired: %d idle", len(l.idle))
	}
	l.closeIdle(true)
	if len(l.idle) != 0 || !closed(conns[1]) {
		t.Fatal("closeIdle left connections open")
	}
	pc, _ = l.get(context.Background(), false)
	l.put(pc)
	if len(l.idle) != 0 || !closed(pc) {
		t.Fatal("a closed pool kept a connection")
	}
}

func TestLeanClientOnlyForPlainHTTP(t *testing.T) {
	for _, raw := range []string{"https://example.com", "ws://example.com"} {
		u, _ := url.Parse(raw)
		if newLeanClient(u, (&net.Dialer{}).DialContext, 1, 0) != nil {
			t.Fatalf("lean client for %s", raw)
		}
	}
}

// closed reports whether pc's connection was closed on this side.
func closed(pc *leanConn) bool {
	return pc.c.SetDeadline(time.Time{}) != nil
}
