//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/switchboard/switchboard/internal/relay"
)

// countConns counts the connections a test server accepted.
func countConns(up *httptest.Server) *atomic.Int64 {
	var n atomic.Int64
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func do(t *testing.T, e *env, method, path string) (*relay.Response, []byte) {
	t.Helper()
	resp, err := e.client.Do(context.Background(), "u", &relay.Request{Method: method, Path: path, Header: http.Header{}})
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return resp, b
}

// TestLeanKeepAliveAndFraming relays responses of every framing in turn —
// Content-Length, chunked with a trailer, bigger than an inline response,
// HEAD, 204, 304 — and proves each arrives whole and the requests share
// one connection to the target.
func TestLeanKeepAliveAndFraming(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: streamed, not inline
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/len":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "fixed")
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
			w.Header().Set("X-Sum", "42")
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Write(big)
		case "/head":
			w.Header().Set("Content-Length", "100")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		}
	}))
	conns := countConns(up)
	up.Start()
	defer up.Close()
	e := setup(t, up.URL, relay.ServerConfig{}, relay.Config{})
	for range 3 {
		if resp, b := do(t, e, "GET", "/len"); resp.StatusCode != 200 || string(b) != "fixed" {
			t.Fatalf("/len: %d %q", resp.StatusCode, b)
		}
		resp, b := do(t, e, "GET", "/chunked")
		if string(b) != "part1,part2" || resp.Trailer.Get("X-Sum") != "42" {
			t.Fatalf("/chunked: %q trailer %v", b, resp.Trailer)
		}
		if _, b := do(t, e, "GET", "/big"); !bytes.Equal(b, big) {
			t.Fatalf("/big: %d bytes", len(b))
		}
		if resp, b := do(t, e, "HEAD", "/head"); resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("Content-Length") != "100" {
			t.Fatalf("HEAD: %d %q %v", resp.StatusCode, b, resp.Header)
		}
		for _, p := range []string{"/204", "/304"} {
			if resp, b := do(t, e, "GET", p); resp.StatusCode != int(p[1]-'0')*100+4 || len(b) != 0 {
				t.Fatalf("%s: %d %q", p, resp.StatusCode, b)
			}
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections to the target for sequential requests, want 1", n)
	}
}

// rawTarget is a target that answers each request it reads on a
// connection with the next of its scripted replies; after a reply marked
// last it closes the connection.
type rawTarget struct {
	ln      net.Listener
	mu      sync.Mutex
	replies []rawReply
	conns   atomic.Int64
	closed  chan struct{} // a connection closed after a reply marked close
	wg      sync.WaitGroup
}

type rawReply struct {
	text  string
	close bool
	// unasked, when set, gives bytes the target writes on the connection
	// after this reply, unasked; wrote is closed once they were written.
	unasked <-chan string
	wrote   chan struct{}
}

func newRawTarget(t *testing.T, replies ...rawReply) *rawTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rt := &rawTarget{ln: ln, replies: replies, closed: make(chan struct{}, len(replies))}
	rt.wg.Add(1)
	go rt.serve()
	t.Cleanup(func() { ln.Close(); rt.wg.Wait() })
	return rt
}

func (rt *rawTarget) url() string { return "http://" + rt.ln.Addr().String() }

func (rt *rawTarget) serve() {
	defer rt.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := rt.ln.Accept()
		if err != nil {
			return
		}
		rt.conns.Add(1)
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				rt.mu.Lock()
				r := rawReply{text: "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"}
				if len(rt.replies) > 0 {
					r, rt.replies = rt.replies[0], rt.replies[1:]
				}
				rt.mu.Unlock()
				if _, err := io.WriteString(c, r.text); err != nil {
					return
				}
				if r.unasked != nil {
					_, err := io.WriteString(c, <-r.unasked)
					close(r.wrote)
					if err != nil {
						return
					}
				}
				if r.close {
					c.Close()
					rt.closed <- struct{}{}
					return
				}
			}
		}()
	}
}

const okReply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// TestLeanRetriesClosedIdleConnection: the target closes a kept-alive
// connection after answering; the next request (a replayable GET) is
// retried on a new connection, as http.Transport does.
func TestLeanRetriesClosedIdleConnection(t *testing.T) {
	rt := newRawTarget(t, rawReply{text: okReply, close: true}, rawReply{text: okReply, close: true}, rawReply{text: okReply})
	e := setup(t, rt.url(), relay.ServerConfig{}, relay.Config{})
	for i := range 3 {
		if resp, b := do(t, e, "GET", "/x"); resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	if n := rt.conns.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}

// TestLeanBadResponseHeads: a malformed head, an oversized head, a head
// cut short and a 101 to an ordinary request are each a 502
// (UPSTREAM_UNREACHABLE) for their request only; the agent goes on
// serving.
func TestLeanBadResponseHeads(t *testing.T) {
	huge := "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\nContent-Length: 0\r\n\r\n"
	bad := []rawReply{
		{text: "garbage\r\n\r\n", close: true},
		{text: huge, close: true},
		{text: "HTTP/1.1 200 OK\r\nContent-Le", close: true},
		{text: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", close: true},
		{text: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", close: true},
	}
	rt := newRawTarget(t, append(bad, rawReply{text: "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + okReply})...)
	e := setup(t, rt.url(), relay.ServerConfig{}, relay.Config{})
	for i := range bad {
		resp, err := e.client.Do(context.Background(), "u", &relay.Request{Method: "GET", Path: "/x", Header: http.Header{}})
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil || (i < len(bad)-1 && !errors.Is(err, relay.ErrUpstreamUnreachable)) {
			t.Fatalf("bad reply %d: %v", i, err)
		}
	}
	if resp, b := do(t, e, "GET", "/x"); resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("after bad replies: %d %q", resp.StatusCode, b)
	}
}

// TestLeanRequestBodies: inline request bodies and headers reach the
// target whatever the method, with or without an idempotency key.
func TestLeanRequestBodies(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %q %d", r.Method, r.Header.Get("X-A"), b, r.UserAgent(), r.ContentLength)
	}))
	defer up.Close()
	e := setup(t, up.URL, relay.ServerConfig{}, relay.Config{})
	for _, tc := range []struct {
		method string
		h      http.Header
		want   string
	}{
		{"POST", http.Header{"X-A": {"1"}}, `POST 1 body "" 4`},
		{"PUT", http.Header{"X-A": {"2"}, "Idempotency-Key": {"k"}}, `PUT 2 body "" 4`},
		{"GET", http.Header{"X-A": {"3"}, "User-Agent": {"ua"}}, `GET 3 body "ua" 4`},
	} {
		resp, err := e.client.Do(context.Background(), "u", &relay.Request{
			Method: tc.method, Path: "/", Header: tc.h, Body: strings.NewReader("body"), ContentLength: 4,
		})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.want {
			t.Fatalf("%s: %q, want %q", tc.method, b, tc.want)
		}
	}
}

// TestLeanPostSkipsClosedIdleConnection: a POST cannot be retried, so it
// takes a kept-alive connection only if the target has not closed it: after
// the target closed the one the GET used, the POST gets a new connection.
func TestLeanPostSkipsClosedIdleConnection(t *testing.T) {
	rt := newRawTarget(t, rawReply{text: okReply, close: true}, rawReply{text: okReply})
	e := setup(t, rt.url(), relay.ServerConfig{}, relay.Config{})
	if resp, b := do(t, e, "GET", "/x"); resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("GET: %d %q", resp.StatusCode, b)
	}
	<-rt.closed
	resp, err := e.client.Do(context.Background(), "u", &relay.Request{
		Method: "POST", Path: "/x", Header: http.Header{}, Body: strings.NewReader("body"), ContentLength: 4,
	})
	if err != nil {
		t.Fatalf("POST after the target closed its connection: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" || rt.conns.Load() != 2 {
		t.Fatalf("POST: %d %q over %d connections", resp.StatusCode, b, rt.conns.Load())
	}
}

// TestLeanDropsConnectionWithUnaskedBytes: a target writes a second,
// unasked response on a kept-alive connection after the first one was
// read (as a target that sends a body with a 204 or more than its
// Content-Length does). The next request, a GET that could be retried,
// must not take that connection: the stray bytes would be read as its
// response.
func TestLeanDropsConnectionWithUnaskedBytes(t *testing.T) {
	unasked := make(chan string, 1)
	wrote := make(chan struct{})
	rt := newRawTarget(t, rawReply{text: okReply, unasked: unasked, wrote: wrote}, rawReply{text: okReply})
	e := setup(t, rt.url(), relay.ServerConfig{}, relay.Config{})
	if resp, b := do(t, e, "GET", "/x"); resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("first GET: %d %q", resp.StatusCode, b)
	}
	unasked <- "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"
	<-wrote
	if resp, b := do(t, e, "GET", "/x"); resp.StatusCode != 200 || string(b) != "ok" || rt.conns.Load() != 2 {
		t.Fatalf("GET after unasked bytes: %d %q over %d connections, want ok over a new one", resp.StatusCode, b, rt.conns.Load())
	}
}
