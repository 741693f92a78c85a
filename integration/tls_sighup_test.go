//go:build unix

package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/tlstest"
)

// TestHTTPSCertificateSIGHUP: a real SIGHUP makes a running gateway
// (gateway.Run, as the binary runs it) re-read its certificate files. The
// reload is observed over one HTTP/2 connection opened before (no new
// handshake, so the check for changed files that runs on handshakes cannot
// be what reloaded them), which stays usable; a new connection then gets
// the new certificate.
func TestHTTPSCertificateSIGHUP(t *testing.T) {
	// The test's own subscription keeps a SIGHUP from ending the test
	// binary should it arrive before the gateway subscribed.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)

	ca := tlstest.NewCA(t, "switchboard-test")
	files := ca.Server("gateway")
	cfg := harnessConfig(t)
	cfg.TLS.CertFile, cfg.TLS.KeyFile = files.CertFile, files.KeyFile
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	ln.Close()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gateway.Run(ctx, cfg, harness.LoggerAt(t, cfg.Log.Level)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway.Run: %v", err)
		}
	})

	var handshakes atomic.Int64
	tc := ca.ClientConfig(tlstest.Files{})
	tc.VerifyConnection = func(tls.ConnectionState) error { handshakes.Add(1); return nil }
	c := tlsClient(t, tc, true)
	base := "https://" + cfg.Listen
	natstest.Eventually(t, 30*time.Second, func() error {
		resp, err := c.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	reloads := func() string {
		t.Helper()
		status, body, proto := call(t, c, "GET", base+"/metrics", "", nil)
		if status != 200 || proto != 2 {
			t.Fatalf("/metrics: %d over HTTP/%d", status, proto)
		}
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, `switchboard_tls_certificate_reloads_total{result="ok"} `); ok {
				return v
			}
		}
		return "0"
	}
	before := reloads()
	if n := handshakes.Load(); n != 1 {
		t.Fatalf("%d handshakes before the signal, want 1", n)
	}
	fresh := tlstest.Leaf(t, ca.Server("gateway")).SerialNumber // same paths, rewritten
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if now := reloads(); now == before {
			return fmt.Errorf("reloads_total{ok} still %s", now)
		}
		return nil
	})
	if n := handshakes.Load(); n != 1 {
		t.Fatalf("%d handshakes: the reload must come from the signal, on the one open connection", n)
	}
	conn, err := tls.Dial("tcp", cfg.Listen, ca.ClientConfig(tlstest.Files{}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(fresh) != 0 {
		t.Fatalf("after SIGHUP the listener serves %v, want %v", got, fresh)
	}
}
