package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
)

// trailerUpstream reads the request body and its trailers, then answers
// a chunked body with declared trailers (as gRPC-web does), and one
// undeclared, forbidden trailer that must not pass.
func trailerUpstream(t testing.TB, seen chan<- http.Header) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		seen <- r.Trailer.Clone()
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "part1-")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("Grpc-Message", "all good")
		w.Header().Set(http.TrailerPrefix+"Content-Length", "99")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRelayTrailers: request trailers reach the upstream, response
// trailers reach the client, through the gateway and through `agent
// client`; forbidden trailers do not pass.
func TestRelayTrailers(t *testing.T) {
	seen := make(chan http.Header, 4)
	up := trailerUpstream(t, seen)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"tr": up.URL}))
	cl := startAgentClient(t, gw.EmbeddedURL(), "tr")
	for name, url := range map[string]string{"gateway": gw.URL() + "/relay/tr/rpc", "agent-client": "http://" + cl.Addr() + "/rpc"} {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest(http.MethodPost, url, pr)
		req.Trailer = http.Header{"X-Checksum": nil, "Host": nil}
		go func() {
			io.WriteString(pw, "request body")
			req.Trailer.Set("X-Checksum", "abc123")
			req.Trailer.Set("Host", "evil")
			pw.Close()
		}()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "part1-part2" {
			t.Fatalf("%s: body %q %v", name, body, err)
		}
		if resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "all good" || resp.Trailer.Get("Content-Length") != "" {
			t.Fatalf("%s: response trailers %v", name, resp.Trailer)
		}
		select {
		case tr := <-seen:
			if tr.Get("X-Checksum") != "abc123" || tr.Get("Host") != "" {
				t.Fatalf("%s: upstream saw trailers %v", name, tr)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: upstream not called", name)
		}
	}
}

// TestRelayExpectContinue: a client that sends Expect: 100-continue gets
// 100 Continue, sends its body, and gets the upstream's response.
func TestRelayExpectContinue(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"api": up.URL}))
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(conn, "POST /relay/api/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("interim response: %v %v", resp, err)
	}
	io.WriteString(conn, "hello")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := result{status: resp.StatusCode, header: resp.Header}
	b, _ := io.ReadAll(resp.Body)
	r.body = string(b)
	if e := decodeEcho(t, r); r.status != 200 || e.Body != "hello" {
		t.Fatalf("%d %+v", r.status, e)
	}
}
