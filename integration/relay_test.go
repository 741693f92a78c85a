package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
)

// echoUpstream answers with what it received, as JSON, and sets a few
// response headers (including hop-by-hop ones the relay must drop).
func echoUpstream(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Upstream", "yes")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "drop me")
		w.Header().Set("Content-Type", "application/json")
		status := http.StatusOK
		if s := r.URL.Query().Get("status"); s != "" {
			status = atoi(s)
		}
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "uri": r.RequestURI, "path": r.URL.EscapedPath(), "query": r.URL.RawQuery,
			"header": r.Header, "body": string(body), "host": r.Host, "length": r.ContentLength,
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

type echoed struct {
	Method string              `json:"method"`
	URI    string              `json:"uri"`
	Path   string              `json:"path"`
	Query  string              `json:"query"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
	Host   string              `json:"host"`
	Length int64               `json:"length"`
}

func decodeEcho(t testing.TB, r result) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("decode %d %q: %v", r.status, r.body, err)
	}
	return e
}

func TestRelayRoundTrip(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"api": up.URL}))

	r := do(t, http.MethodPost, gw.URL()+"/relay/api/items/x%2Fy/z?q=1&r=a%20b", strings.NewReader("hello"), map[string]string{
		"Content-Type": "text/plain", "X-Custom": "v", "Connection": "X-Secret", "X-Secret": "s", "Proxy-Authorization": "p", "Te": "trailers",
	})
	if r.status != 200 || r.header.Get("X-Upstream") != "yes" || len(r.header.Values("Set-Cookie")) != 2 {
		t.Fatalf("response %d %v", r.status, r.header)
	}
	if r.header.Get("X-Hop") != "" {
		t.Fatalf("hop-by-hop response header relayed: %v", r.header)
	}
	e := decodeEcho(t, r)
	if e.Method != "POST" || e.URI != "/items/x%2Fy/z?q=1&r=a%20b" || e.Query != "q=1&r=a%20b" || e.Body != "hello" {
		t.Fatalf("upstream saw %+v", e)
	}
	h := http.Header(e.Header)
	if h.Get("X-Custom") != "v" || h.Get("Content-Type") != "text/plain" {
		t.Fatalf("headers lost: %v", h)
	}
	for _, hop := range []string{"X-Secret", "Proxy-Authorization", "Te", "Connection"} {
		if h.Get(hop) != "" {
			t.Fatalf("hop-by-hop %s relayed: %v", hop, h)
		}
	}
	if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-Host") != strings.TrimPrefix(gw.URL(), "http://") {
		t.Fatalf("forwarded headers: %v", h)
	}
}

func TestRelayMethodsAndStatuses(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"api": up.URL}))

	// Root path, both spellings.
	for _, p := range []string{"/relay/api", "/relay/api/"} {
		if e := decodeEcho(t, do(t, "GET", gw.URL()+p, nil, nil)); e.URI != "/" || e.Method != "GET" || e.Length != 0 {
			t.Fatalf("%s: upstream saw %+v", p, e)
		}
	}
	// An upstream error status passes through with its body.
	r := do(t, "GET", gw.URL()+"/relay/api/x?status=503", nil, nil)
	if r.status != 503 || r.header.Get("X-Upstream") != "yes" || decodeEcho(t, r).Path != "/x" {
		t.Fatalf("error status: %d %q", r.status, r.body)
	}
	if r := do(t, "GET", gw.URL()+"/relay/api/x?status=404", nil, nil); r.status != 404 {
		t.Fatalf("404 = %d", r.status)
	}
	// HEAD keeps the declared length, without a body.
	if r := do(t, "HEAD", gw.URL()+"/relay/api/h", nil, nil); r.status != 200 || r.body != "" || r.header.Get("X-Upstream") != "yes" {
		t.Fatalf("HEAD: %d %v %q", r.status, r.header, r.body)
	}
	// Methods beyond echo's list, and an upstream name needing escapes.
	if e := decodeEcho(t, do(t, "PURGE", gw.URL()+"/relay/api/cache", nil, nil)); e.Method != "PURGE" {
		t.Fatalf("PURGE: %+v", e)
	}
	for _, m := range []string{"PUT", "PATCH", "DELETE", "OPTIONS"} {
		if e := decodeEcho(t, do(t, m, gw.URL()+"/relay/api/m", strings.NewReader("b"), nil)); e.Method != m || e.Body != "b" {
			t.Fatalf("%s: %+v", m, e)
		}
	}
	// Chunked request body of unknown length (streamed, not inline).
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte("chunk1-")); pw.Write([]byte("chunk2")); pw.Close() }()
	if e := decodeEcho(t, do(t, "POST", gw.URL()+"/relay/api/chunked", pr, nil)); e.Body != "chunk1-chunk2" || e.Length != -1 {
		t.Fatalf("chunked: %+v", e)
	}
}

func TestRelayNames(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, func(c *gateway.Config) { c.Relay.AgentWait = 300 * time.Millisecond })
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"a.b>*": up.URL, "my api/v1": up.URL}))
	if e := decodeEcho(t, do(t, "GET", gw.URL()+"/relay/a.b%3E%2A/z", nil, nil)); e.Path != "/z" {
		t.Fatalf("wildcard-ish name: %+v", e)
	}
	if e := decodeEcho(t, do(t, "GET", gw.URL()+"/relay/my%20api%2Fv1/z", nil, nil)); e.Path != "/z" {
		t.Fatalf("escaped name: %+v", e)
	}
	// "a" is not "a.b>*": nobody serves it.
	wantCode(t, do(t, "GET", gw.URL()+"/relay/a/z", nil, nil), 503, "NO_AGENT")
}
