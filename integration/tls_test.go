package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/tlstest"
)

// openPoll starts GET /read/{consumer} with c and returns a reader of its
// body lines, the protocol it runs on, and a function ending it.
func openPoll(t testing.TB, c *http.Client, base, consumer string, sse bool) (*bufio.Reader, int, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/read/"+consumer, nil)
	if sse {
		req.Header.Set("Accept", "text/event-stream")
	}
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		cancel()
		t.Fatalf("read: %v %v", err, resp)
	}
	return bufio.NewReader(resp.Body), resp.ProtoMajor, func() { resp.Body.Close(); cancel() }
}

// nextEvent reads lines until one carries an event and returns it.
func nextEvent(t testing.TB, r *bufio.Reader) string {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("poll ended before an event: %v", err)
		}
		line = strings.TrimPrefix(strings.TrimSpace(line), "data: ")
		if strings.HasPrefix(line, "{") {
			return line
		}
	}
}

// TestHTTPSMegaphone: a Megaphone SSE poll over HTTP/2 and an NDJSON poll
// over HTTPS/1.1 (the parked path, on a hijacked *tls.Conn) both get their
// events.
func TestHTTPSMegaphone(t *testing.T) {
	gw := startTLSGateway(t, nil)
	for _, c := range []struct {
		name   string
		client *http.Client
		sse    bool
		proto  int
	}{{"sse over h2", gw.h2, true, 2}, {"ndjson over https/1.1", gw.h1, false, 1}, {"sse over https/1.1", gw.h1, true, 1}} {
		t.Run(c.name, func(t *testing.T) {
			producer, consumer := megaphoneChannel(t, c.client, gw.URL())
			r, proto, end := openPoll(t, c.client, gw.URL(), consumer, c.sse)
			defer end()
			if proto != c.proto {
				t.Fatalf("poll ran on HTTP/%d, want %d", proto, c.proto)
			}
			for _, n := range []string{"1", "2"} {
				megaphoneWrite(t, c.client, gw.URL(), producer, n)
				if ev := nextEvent(t, r); !strings.Contains(ev, `"n":"`+n+`"`) {
					t.Fatalf("event %s: %s", n, ev)
				}
			}
		})
	}
}

// TestHTTPSPipe streams 100 MiB through a pipe with both ends on HTTP/2.
func TestHTTPSPipe(t *testing.T) {
	const size = 100 << 20
	if testing.Short() {
		t.Skip("100 MiB transfer")
	}
	gw := startTLSGateway(t, nil)
	url := gw.URL() + "/channels/tls/big"
	got := make(chan string, 1)
	go func() {
		resp, err := gw.h2.Get(url)
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		got <- fmt.Sprintf("%d %d %x %v", resp.ProtoMajor, n, h.Sum(nil), err)
	}()
	start := time.Now()
	req, _ := http.NewRequest("POST", url, &pattern{n: size})
	req.ContentLength = size
	resp, err := gw.h2.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("producer: %d over HTTP/%d", resp.StatusCode, resp.ProtoMajor)
	}
	if g, want := <-got, fmt.Sprintf("2 %d %s <nil>", size, patternSum(size)); g != want {
		t.Fatalf("consumer got %q, want %q", g, want)
	}
	t.Logf("100 MiB over h2 in %s", time.Since(start))
}

// TestHTTPSMiddleman: a middleman session over wss://.
func TestHTTPSMiddleman(t *testing.T) {
	gw := startTLSGateway(t, func(c *gateway.Config, _ *tlstest.CA) { c.Middleman.ServiceKeys = []string{"svc"} })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(gw.URL(), "https")+middleman.Route, &websocket.DialOptions{HTTPClient: gw.h1})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	read := func() string {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	write := func(s string) {
		if err := ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write("svc")
	if ok := read(); ok != "MM OK" {
		t.Fatalf("handshake: %q", ok)
	}
	read() // cid
	write(string((&middleman.Frame{Cmd: "SUB", Key: "k"}).Bytes()))
	natstest.Eventually(t, 10*time.Second, func() error {
		write(string((&middleman.Frame{Cmd: "PUB", Key: "k", Body: []byte("over tls")}).Bytes()))
		rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer rcancel()
		_, b, err := ws.Read(rctx)
		if err != nil {
			return err
		}
		f, err := middleman.Parse(b)
		if err != nil || f.Cmd != "PUB" || string(f.Body) != "over tls" {
			return fmt.Errorf("got %q (%v)", b, err)
		}
		return nil
	})
}

// TestHTTPSRelay: a relayed request over HTTP/2.
func TestHTTPSRelay(t *testing.T) {
	up := echoUpstream(t)
	gw := startTLSGateway(t, nil)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"api": up.URL}))
	status, body, proto := call(t, gw.h2, "POST", gw.URL()+"/relay/api/x?q=1", "text/plain", strings.NewReader("hello"))
	if status != 200 || proto != 2 || !strings.Contains(body, `"body":"hello"`) || !strings.Contains(body, `"X-Forwarded-Proto":["https"]`) {
		t.Fatalf("relay: %d over HTTP/%d: %s", status, proto, body)
	}
}

// TestHTTPSCertificateRotation: replacing the certificate files mid-test
// makes new connections get the new certificate, while a Megaphone poll
// opened before keeps its connection and still gets its events.
func TestHTTPSCertificateRotation(t *testing.T) {
	gw := startTLSGateway(t, nil)
	producer, consumer := megaphoneChannel(t, gw.h1, gw.URL())
	r, _, end := openPoll(t, gw.h1, gw.URL(), consumer, false)
	defer end()
	megaphoneWrite(t, gw.h2, gw.URL(), producer, "before")
	if ev := nextEvent(t, r); !strings.Contains(ev, "before") {
		t.Fatal(ev)
	}
	old := tlstest.Leaf(t, gw.files).SerialNumber
	files := gw.ca.Server("gateway") // same paths: rewritten in place
	fresh := tlstest.Leaf(t, files).SerialNumber
	if files != gw.files || old.Cmp(fresh) == 0 {
		t.Fatalf("rotation did not rewrite the files: %v %v", files, gw.files)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		conn, err := tls.Dial("tcp", gw.Addr(), gw.ca.ClientConfig(tlstest.Files{}))
		if err != nil {
			return err
		}
		defer conn.Close()
		if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(fresh) != 0 {
			return fmt.Errorf("serving certificate %v, want %v", got, fresh)
		}
		return nil
	})
	megaphoneWrite(t, gw.h2, gw.URL(), producer, "after")
	if ev := nextEvent(t, r); !strings.Contains(ev, "after") {
		t.Fatal(ev)
	}
	if err := gw.ReloadTLS(); err != nil {
		t.Fatalf("explicit reload (SIGHUP): %v", err)
	}
	_, metrics, _ := call(t, gw.h2, "GET", gw.URL()+"/metrics", "", nil)
	if !strings.Contains(metrics, `switchboard_tls_certificate_reloads_total{result="ok"}`) ||
		!strings.Contains(metrics, "switchboard_tls_certificate_not_after_seconds") {
		t.Fatal("/metrics lacks the certificate reload counter or expiry gauge")
	}
}

// TestHTTPSAdminClientCertificate: with tls.client_ca_file, /metrics, the
// console (/ui/) and its API (/admin/...) need a client certificate of that
// CA; public routes do not.
func TestHTTPSAdminClientCertificate(t *testing.T) {
	var clients *tlstest.CA
	gw := startTLSGateway(t, func(c *gateway.Config, _ *tlstest.CA) {
		clients = tlstest.NewCA(t, "operators")
		c.TLS.ClientCAFile = clients.CertFile
	})
	operator := tlsClient(t, gw.ca.ClientConfig(clients.Client("operator")), true)
	for _, path := range []string{"/metrics", "/ui/", "/admin/api/cluster"} {
		if status, body, _ := call(t, gw.h2, "GET", gw.URL()+path, "", nil); status != 403 || !strings.Contains(body, "CLIENT_CERTIFICATE_REQUIRED") {
			t.Fatalf("%s without certificate: %d %s", path, status, body)
		}
		if status, _, _ := call(t, operator, "GET", gw.URL()+path, "", nil); status != 200 {
			t.Fatalf("%s with certificate: %d", path, status)
		}
	}
	if status, _, _ := call(t, gw.h2, "GET", gw.URL()+"/readyz", "", nil); status != 200 {
		t.Fatalf("/readyz without certificate: %d", status)
	}
	// A certificate of another CA is either not sent (Go's client offers
	// only certificates of the CAs the server names) or refused.
	strangers := tlstest.NewCA(t, "strangers").Client("x")
	other := gw.ca.ClientConfig(strangers)
	cert := other.Certificates[0]
	other.Certificates = nil
	other.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	if resp, err := tlsClient(t, other, true).Get(gw.URL() + "/metrics"); err == nil {
		resp.Body.Close()
		t.Fatalf("a certificate of another CA: %d", resp.StatusCode)
	}
}

// TestHTTPSRefusesOldTLS: TLS 1.1 and plain HTTP get no answer.
func TestHTTPSRefusesOldTLS(t *testing.T) {
	gw := startTLSGateway(t, nil)
	cfg := gw.ca.ClientConfig(tlstest.Files{})
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if conn, err := tls.Dial("tcp", gw.Addr(), cfg); err == nil {
		conn.Close()
		t.Fatal("TLS 1.1 accepted")
	}
	if resp, err := http.Get("http://" + gw.Addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on the TLS port: %d", resp.StatusCode)
		}
	}
}

// TestH2C: http.h2c serves cleartext HTTP/2 with prior knowledge, and
// HTTP/1.1 still.
func TestH2C(t *testing.T) {
	cfg := harnessConfig(t)
	cfg.HTTP.H2C = true
	g := startGateway(t, cfg)
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	status, _, proto := call(t, &http.Client{Transport: tr}, "GET", g.URL()+"/readyz", "", nil)
	if status != 200 || proto != 2 {
		t.Fatalf("h2c: %d over HTTP/%d", status, proto)
	}
	if status, _, proto := call(t, http.DefaultClient, "GET", g.URL()+"/readyz", "", nil); status != 200 || proto != 1 {
		t.Fatalf("http/1.1: %d over HTTP/%d", status, proto)
	}
}

// TestHTTPSRelayKeepsH2Connection: relayed requests over HTTP/2 share one
// connection (the HTTP/1.1 full-duplex workaround's "Connection: close"
// must not reach h2, where it shuts the connection down after each one).
func TestHTTPSRelayKeepsH2Connection(t *testing.T) {
	up := echoUpstream(t)
	gw := startTLSGateway(t, nil)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"api": up.URL}))
	var handshakes atomic.Int64
	cfg := gw.ca.ClientConfig(tlstest.Files{})
	cfg.VerifyConnection = func(tls.ConnectionState) error { handshakes.Add(1); return nil }
	c := tlsClient(t, cfg, true)
	for i := range 5 {
		body := io.Reader(nil)
		if i%2 == 1 {
			body = strings.NewReader("some body")
		}
		if status, _, proto := call(t, c, "POST", gw.URL()+"/relay/api/x", "text/plain", body); status != 200 || proto != 2 {
			t.Fatalf("relay: %d over HTTP/%d", status, proto)
		}
	}
	if n := handshakes.Load(); n != 1 {
		t.Fatalf("%d TLS handshakes for 5 requests, want 1", n)
	}
}
