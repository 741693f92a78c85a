package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/tlstest"
)

// tlsGateway is a gateway serving HTTPS with a certificate of its own
// test CA, and clients that trust that CA.
type tlsGateway struct {
	*gateway.Gateway
	cfg   *gateway.Config
	ca    *tlstest.CA
	files tlstest.Files // the listener's certificate
	h1    *http.Client  // HTTP/1.1 over TLS
	h2    *http.Client  // HTTP/2 over TLS
}

// startTLSGateway starts an embedded-mode gateway with tls.cert_file and
// tls.key_file set; modify may change the config first.
func startTLSGateway(t testing.TB, modify func(*gateway.Config, *tlstest.CA)) *tlsGateway {
	t.Helper()
	ca := tlstest.NewCA(t, "switchboard-test")
	files := ca.Server("gateway")
	cfg := harness.Config(t)
	relayConfig(cfg)
	cfg.Log.Level = "info"
	cfg.TLS.CertFile, cfg.TLS.KeyFile = files.CertFile, files.KeyFile
	if modify != nil {
		modify(cfg, ca)
	}
	g := startGateway(t, cfg)
	return &tlsGateway{Gateway: g, cfg: cfg, ca: ca, files: files,
		h1: tlsClient(t, ca.ClientConfig(tlstest.Files{}), false),
		h2: tlsClient(t, ca.ClientConfig(tlstest.Files{}), true)}
}

// startGateway starts cfg and waits for it to be ready (the harness's
// readiness probe speaks plain HTTP only).
func startGateway(t testing.TB, cfg *gateway.Config) *gateway.Gateway {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, cfg, harness.LoggerAt(t, cfg.Log.Level))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Grace)
		defer cancel()
		if err := g.Shutdown(sctx); err != nil {
			t.Errorf("gateway shutdown: %v", err)
		}
	})
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}

// tlsClient is an HTTP client with cfg, speaking HTTP/2 when h2 is set,
// else HTTP/1.1 only; its idle connections close at the end of the test.
func tlsClient(t testing.TB, cfg *tls.Config, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// call sends one request with c and returns status, body and protocol.
func call(t testing.TB, c *http.Client, method, url, ctype string, body io.Reader) (int, string, int) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.ProtoMajor
}

// megaphoneChannel creates a channel and returns its producer and
// consumer addresses.
func megaphoneChannel(t testing.TB, c *http.Client, base string) (producer, consumer string) {
	t.Helper()
	status, body, _ := call(t, c, "POST", base+"/create", "", nil)
	var ch struct{ ProducerAddress, ConsumerAddress string }
	if err := json.Unmarshal([]byte(body), &ch); status != 200 || err != nil {
		t.Fatalf("create: %d %q", status, body)
	}
	return ch.ProducerAddress, ch.ConsumerAddress
}

// megaphoneWrite writes one event {"n": n}.
func megaphoneWrite(t testing.TB, c *http.Client, base, producer, n string) {
	t.Helper()
	if status, body, _ := call(t, c, "POST", base+"/write/"+producer+"/s", "application/json", strings.NewReader(`{"n":"`+n+`"}`)); status != 201 {
		t.Fatalf("write: %d %q", status, body)
	}
}

// harnessConfig is harness.Config with relay waits shortened and info logs.
func harnessConfig(t testing.TB) *gateway.Config {
	cfg := harness.Config(t)
	relayConfig(cfg)
	cfg.Log.Level = "info"
	return cfg
}

// portForward listens on a loopback port and copies every connection both
// ways to one address: a client given only its port reaches that address
// and nothing else, and cut takes even that away.
type portForward struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	cut   bool
	wg    sync.WaitGroup
}

func newPortForward(t testing.TB, to string) *portForward {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &portForward{ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil || !p.track(in, out) {
				in.Close()
				if out != nil {
					out.Close()
				}
				continue
			}
			p.wg.Add(2)
			go p.copy(out, in)
			go p.copy(in, out)
		}
	}()
	t.Cleanup(func() { p.Cut(); p.wg.Wait() })
	return p
}

// Addr is the forwarder's host:port.
func (p *portForward) Addr() string { return p.ln.Addr().String() }

func (p *portForward) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *portForward) copy(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Cut closes the listener and every connection through it.
func (p *portForward) Cut() {
	p.mu.Lock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	p.ln.Close()
}
