package megaphone_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"
)

// TestParkedPollKeepAlive: a parked poll's connection goes back to
// net/http when the poll ends, so the client's next request (a re-poll,
// or anything else) reuses it; both body framings end cleanly.
func TestParkedPollKeepAlive(t *testing.T) {
	gw := start(t, fast(time.Second, 30*time.Second))
	c := create(t, gw.URL())
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var reused []bool
	trace := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) },
	})
	for i, accept := range []string{"", "text/event-stream", ""} {
		body := `{"n":` + string(rune('0'+i)) + `}`
		mustWrite(t, gw.URL(), c.ProducerAddress, "s", body)
		req, _ := http.NewRequestWithContext(trace, "GET", gw.URL()+"/read/"+c.ConsumerAddress, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Close || resp.Header.Get("Connection") != "" {
			t.Fatalf("poll %d: %d, close %v, Connection %q", i, resp.StatusCode, resp.Close, resp.Header.Get("Connection"))
		}
		got, err := io.ReadAll(resp.Body) // to the poll's end
		resp.Body.Close()
		if err != nil || !strings.Contains(string(got), body) {
			t.Fatalf("poll %d: %q, %v", i, got, err)
		}
	}
	// Any other request goes on the same connection too.
	req, _ := http.NewRequestWithContext(trace, "GET", gw.URL()+"/healthz", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz after the polls = %d", resp.StatusCode)
	}
	if want := []bool{false, true, true, true}; len(reused) != len(want) || reused[1] != true || reused[2] != true || reused[3] != true {
		t.Fatalf("connections reused = %v, want %v", reused, want)
	}
}

// TestParkedPollClosesWhenAsked: a client that asked to close, or that
// sent bytes during the poll (they were dropped, so the connection is
// not at a request boundary any more), gets the end of the body and then
// the connection closed: what it sent is never read as a request.
func TestParkedPollClosesWhenAsked(t *testing.T) {
	gw := start(t, fast(time.Second, 30*time.Second))
	c := create(t, gw.URL())
	for _, tc := range []struct {
		name, hdr, during string
		wantClose         bool
	}{
		{name: "Connection: close", hdr: "Connection: close\r\n", wantClose: true},
		{name: "bytes during the poll", during: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", gw.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, "GET /read/"+c.ConsumerAddress+" HTTP/1.1\r\nHost: x\r\n"+tc.hdr+"\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || resp.Close != tc.wantClose {
				t.Fatalf("poll: %d, close %v, want close %v", resp.StatusCode, resp.Close, tc.wantClose)
			}
			if tc.during != "" {
				if _, err := io.WriteString(conn, tc.during); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := io.ReadAll(resp.Body); err != nil { // the chunked body's end
				t.Fatalf("body: %v", err)
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Fatalf("after the poll: %q, %v; want the connection closed", rest, err)
			}
		})
	}
}
