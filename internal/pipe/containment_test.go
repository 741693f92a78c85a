package pipe_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
)

// TestLongNames: namespaces and channel names of any length, plain or
// percent-encoded, are 400 BAD_REQUEST (or net/http's own 431) on every
// pipe route before anything reaches NATS, and the gateway serves on.
func TestLongNames(t *testing.T) {
	e := embedded(t, nil)
	ctx := context.Background()
	var names []string
	for _, n := range []int{1 << 10, 5 << 10, 70 << 10} {
		names = append(names, strings.Repeat("n", n))
	}
	names = append(names, strings.Repeat("%2E", 1400), strings.Repeat("%2F", 300), strings.Repeat("%C3%A9", 129))
	for _, long := range names {
		cases := []struct{ method, path string }{
			{http.MethodPost, "/channels/ns/" + long},
			{http.MethodPut, "/channels/ns/" + long},
			{http.MethodGet, "/channels/ns/" + long},
			{http.MethodDelete, "/channels/ns/" + long},
			{http.MethodPost, "/channels/" + long + "/x"},
			{http.MethodGet, "/channels/" + long + "/x"},
			{http.MethodDelete, "/channels/" + long + "/x"},
			{http.MethodGet, "/channels/" + long},
			{http.MethodDelete, "/channels/" + long},
		}
		for _, c := range cases {
			r := do(ctx, c.method, e.url(0)+c.path, strings.NewReader("body"), "")
			if r.err != nil {
				t.Errorf("%s %.30s… (%d B): %v", c.method, c.path, len(long), r.err)
				continue
			}
			if r.status == http.StatusRequestHeaderFieldsTooLarge {
				continue
			}
			if r.status != http.StatusBadRequest || errorCode(t, r) != "BAD_REQUEST" {
				t.Errorf("%s %.30s… (%d B): %d %.200s", c.method, c.path, len(long), r.status, r.body)
			}
		}
	}
	var st map[string][]string
	if getJSON(t, e.url(0)+"/state", &st); len(st) != 0 {
		t.Fatalf("long names left state behind: %v", st)
	}
	harness.Smoke(t, e.url(0))
}

// TestBodyTimeoutOnListings: the listings and DELETEs read no body; a
// client trickling one does not hold them past http.body_timeout.
// Transfers are not bound by it.
func TestBodyTimeoutOnListings(t *testing.T) {
	e := embedded(t, func(c *gateway.Config) { c.HTTP.BodyTimeout = 300 * time.Millisecond })
	for _, req := range []string{"GET /state", "GET /channels/namespaces", "GET /channels/ns", "DELETE /channels/ns", "DELETE /channels/ns/x"} {
		conn, err := net.Dial("tcp", e.gws[0].Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// 200 bytes announced, 1 sent: without a deadline net/http waits
		// for the rest before it answers.
		fmt.Fprintf(conn, "%s HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n ", req)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Errorf("%s with a trickled body: no answer within 5 s: %v", req, err)
			continue
		}
		resp.Body.Close()
	}
	// A producer whose body takes longer than the deadline still gets
	// through: transfers stream and are not bound by it.
	ctx := context.Background()
	pr, pw := io.Pipe()
	p := async(ctx, http.MethodPost, chanURL(e.url(0), "slow", "x"), pr, "text/plain")
	c := consume(ctx, e.url(0), "slow", "x")
	if _, err := pw.Write([]byte("first ")); err != nil {
		t.Fatal(err)
	}
	<-time.After(3 * 300 * time.Millisecond) // past the body deadline
	if _, err := pw.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if r := wait(t, c); r.status != http.StatusOK || string(r.body) != "first second" {
		t.Fatalf("consumer: %d %q %v", r.status, r.body, r.err)
	}
	if r := wait(t, p); r.status != http.StatusOK {
		t.Fatalf("producer: %d %s %v", r.status, r.body, r.err)
	}
}
