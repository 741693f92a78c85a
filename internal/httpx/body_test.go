package httpx

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
	"testing"
	"time"
)

// drip sends a request head announcing a body of size bytes, then one byte
// every interval until stop is closed or the connection fails.
func drip(t *testing.T, addr, method, path string, size int, interval time.Duration, stop <-chan struct{}) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, path, size)
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; i < size; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	return conn
}

// TestBodyDeadline: a body trickled slower than the deadline fails the
// read with a timeout; a body sent in time lifts the deadline, so a
// handler that runs long after reading keeps its context.
func TestBodyDeadline(t *testing.T) {
	readErr := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		BodyDeadline(w, r, 300*time.Millisecond)
		_, err := io.ReadAll(r.Body)
		if err != nil {
			readErr <- err
			WriteError(w, http.StatusRequestTimeout, CodeTimeout, "slow body")
			return
		}
		select { // outlive the deadline: the context must stay alive
		case <-r.Context().Done():
			readErr <- fmt.Errorf("context ended: %w", context.Cause(r.Context()))
		case <-time.After(600 * time.Millisecond):
			readErr <- nil
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	stop := make(chan struct{})
	defer close(stop)
	conn := drip(t, srv.Listener.Addr().String(), "POST", "/", 100, 50*time.Millisecond, stop)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a trickled body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("trickled body: %d close=%v", resp.StatusCode, resp.Close)
	}
	if err := <-readErr; !IsTimeout(err) {
		t.Fatalf("read error %v is not a timeout", err)
	}
	resp, err = http.Post(srv.URL, "application/json", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("empty body: %v %v", resp, err)
	}
	resp.Body.Close()
	<-readErr
	big := make([]byte, 1<<20)
	resp, err = http.Post(srv.URL, "application/json", bytes.NewReader(big))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("body in time: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := <-readErr; err != nil {
		t.Fatalf("after the body: %v", err)
	}
	if IsTimeout(errors.New("other")) {
		t.Fatal("IsTimeout of another error")
	}
}

// TestEndBody: once the body was read to its end, EndBody gives the
// request net/http's own body back; before that it leaves the wrapper,
// whose deadline still bounds the rest of the body.
func TestEndBody(t *testing.T) {
	type result struct{ before, after bool }
	got := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		BodyDeadline(w, r, 5*time.Second)
		var one [1]byte
		_, _ = r.Body.Read(one[:])
		EndBody(r) // one byte of several read: still wrapped
		_, before := r.Body.(*deadlineBody)
		_, _ = io.ReadAll(r.Body)
		EndBody(r)
		_, after := r.Body.(*deadlineBody)
		got <- result{before, after}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	for i := range 2 { // the connection is reused after the first
		resp, err := http.Post(srv.URL, "application/json", bytes.NewReader([]byte(`{"a":1}`)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if r := <-got; !r.before || r.after {
			t.Fatalf("request %d: wrapped before the end %v, after %v", i, r.before, r.after)
		}
	}
}
