package embedded

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/natsconn"
	"github.com/switchboard/switchboard/internal/tlstest"
)

// startTLS starts an embedded server with mTLS for agents.
func startTLS(t *testing.T, ca *tlstest.CA, verify bool) *Server {
	t.Helper()
	srv := ca.Server("nats")
	s, err := Start(Config{Listen: "-1", StoreDir: t.TempDir(), Websocket: true, TLS: TLS{
		CertFile: srv.CertFile, KeyFile: srv.KeyFile, CAFile: ca.CertFile, VerifyClients: verify,
	}, Agents: []Agent{{User: "agent-a", Password: "pw", Upstreams: []string{"a"}}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// dial connects as agent-a the way the binaries do (natsconn), with
// retries, so a refusal must come from natsconn's fail-fast.
func dial(t *testing.T, url string, files natsconn.TLS) (*nats.Conn, error) {
	t.Helper()
	opts, err := natsconn.Options("test", natsconn.Auth{User: "agent-a", Password: "pw"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	tlsOpts, err := files.Options()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := natsconn.Connect(ctx, url, append(opts, tlsOpts...)...)
	if err != nil && ctx.Err() != nil {
		t.Fatalf("Connect waited for its context instead of failing at once: %v", err)
	}
	return nc, err
}

// TestMutualTLS: an agent with a certificate of the configured CA
// connects; without a certificate, with one of another CA, or in
// plaintext it is refused at once with a one-line error naming the URL;
// the gateway's in-process connection needs no certificate.
func TestMutualTLS(t *testing.T) {
	// other has the same name as ca: Go's client offers a certificate only
	// when its issuer is one the server names, so other's certificate is
	// really sent and refused by the server's verification.
	ca, other := tlstest.NewCA(t, "switchboard"), tlstest.NewCA(t, "switchboard")
	s := startTLS(t, ca, true)
	url := s.ClientURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("ClientURL = %s, want tls://", url)
	}
	good := ca.Client("agent-a")
	nc, err := dial(t, url, natsconn.TLS{CAFile: ca.CertFile, CertFile: good.CertFile, KeyFile: good.KeyFile})
	if err != nil {
		t.Fatalf("good certificate refused: %v", err)
	}
	nc.Close()

	foreign := other.Client("agent-a")
	for name, c := range map[string]struct {
		url   string
		files natsconn.TLS
	}{
		"no certificate":           {url, natsconn.TLS{CAFile: ca.CertFile}},
		"another CA's certificate": {url, natsconn.TLS{CAFile: ca.CertFile, CertFile: foreign.CertFile, KeyFile: foreign.KeyFile}},

		"server not verifiable": {url, natsconn.TLS{CAFile: other.CertFile, CertFile: good.CertFile, KeyFile: good.KeyFile}},
	} {
		nc, err := dial(t, c.url, c.files)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, c.url) {
			t.Errorf("%s: error %q is not one line naming %s", name, msg, c.url)
		}
		t.Logf("%s: %v", name, err)
	}

	in, err := nats.Connect("", s.ConnectOptions()...)
	if err != nil {
		t.Fatalf("in-process connection: %v", err)
	}
	defer in.Close()
	if err := in.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestPlaintextRefused: a client that does not start TLS gets no PONG:
// the server hangs up.
func TestPlaintextRefused(t *testing.T) {
	s := startTLS(t, tlstest.NewCA(t, "switchboard"), false)
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.ClientURL(), "tls://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO = %q, %v; want tls_required", info, err)
	}
	if _, err := conn.Write([]byte("CONNECT {\"user\":\"agent-a\",\"pass\":\"pw\"}\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return // closed: refused
		}
		if strings.HasPrefix(line, "PONG") {
			t.Fatal("a plaintext client got PONG")
		}
	}
}

// TestTLSWithoutClientVerification: with only a server certificate,
// agents need no certificate but still TLS.
func TestTLSWithoutClientVerification(t *testing.T) {
	ca := tlstest.NewCA(t, "switchboard")
	s := startTLS(t, ca, false)
	nc, err := dial(t, s.ClientURL(), natsconn.TLS{CAFile: ca.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

// TestWebsocketListener: the WebSocket transport listens on loopback
// without TLS and checks credentials like the client port.
func TestWebsocketListener(t *testing.T) {
	s := startTLS(t, tlstest.NewCA(t, "switchboard"), true)
	addr := s.WebsocketAddr()
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":-1") {
		t.Fatalf("WebsocketAddr = %q", addr)
	}
	nc, err := dial(t, "ws://"+addr, natsconn.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	// The server answers -ERR and hangs up; the client sees the error or,
	// when the hang-up wins the race, a broken pipe. Either way: refused.
	bad, err := nats.Connect("ws://"+addr, nats.UserInfo("agent-a", "wrong"))
	if err == nil {
		bad.Close()
		t.Fatal("wrong password accepted over WebSocket")
	}
}

// TestTLSConfigErrors: incomplete TLS settings stop start-up.
func TestTLSConfigErrors(t *testing.T) {
	ca := tlstest.NewCA(t, "x")
	srv := ca.Server("nats")
	for name, c := range map[string]TLS{
		"key missing":       {CertFile: srv.CertFile},
		"verify without CA": {CertFile: srv.CertFile, KeyFile: srv.KeyFile, VerifyClients: true},
		"CA without cert":   {CAFile: ca.CertFile},
		"unreadable":        {CertFile: srv.CertFile + ".missing", KeyFile: srv.KeyFile},
	} {
		s, err := Start(Config{Listen: "-1", StoreDir: t.TempDir(), TLS: c}, slog.New(slog.DiscardHandler))
		if err == nil {
			s.Shutdown()
			t.Errorf("%s: started", name)
		} else if !errors.Is(err, ErrTLSConfig) {
			t.Errorf("%s: %v, want ErrTLSConfig", name, err)
		}
	}
}
