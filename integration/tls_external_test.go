package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/tlstest"
)

// TestExternalNATSTLS: both binaries reach an external NATS server that
// requires TLS with a client certificate (mTLS) and a token, through a
// tls:// URL and the nats.tls_* keys, and a relayed request goes end to
// end. A gateway that does not trust the server's certificate fails to
// start with a prompt one-line error naming the URL.
func TestExternalNATSTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	srv := ca.Server("nats")
	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: srv.CertFile, KeyFile: srv.KeyFile, CaFile: ca.CertFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.RunServer(t, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, tlsCfg, 5
		o.Authorization = "s3cret"
	})
	url := "tls://" + ns.Addr().String()
	gwCert, agentCert := ca.Client("gateway"), ca.Client("agent")

	cfg := harnessConfig(t)
	cfg.NATS.URL, cfg.NATS.Token = url, "s3cret"
	cfg.NATS.TLSCAFile, cfg.NATS.TLSCertFile, cfg.NATS.TLSKeyFile = ca.CertFile, gwCert.CertFile, gwCert.KeyFile
	gw := harness.Start(t, cfg)

	up := echoUpstream(t)
	ac := agentConfig(t, url, map[string]string{"api": up.URL})
	ac.NATS.Token = "s3cret"
	ac.NATS.TLSCAFile, ac.NATS.TLSCertFile, ac.NATS.TLSKeyFile = ca.CertFile, agentCert.CertFile, agentCert.KeyFile
	startAgent(t, ac)
	if r := do(t, "POST", gw.URL()+"/relay/api/x", strings.NewReader("over tls"), nil); r.status != 200 || !strings.Contains(r.body, `"body":"over tls"`) {
		t.Fatalf("relay: %d %s", r.status, r.body)
	}

	// The gateway trusts another CA: refused at once, one line, the URL.
	bad := harnessConfig(t)
	bad.NATS.URL, bad.NATS.Token = url, "s3cret"
	other := tlstest.NewCA(t, "elsewhere")
	bad.NATS.TLSCAFile, bad.NATS.TLSCertFile, bad.NATS.TLSKeyFile = other.CertFile, gwCert.CertFile, gwCert.KeyFile
	if err := bad.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, bad, harness.Logger(t))
	if err == nil {
		err = g.WaitReady(ctx)
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = g.Shutdown(sctx)
		scancel()
	}
	if err == nil || ctx.Err() != nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), url) {
		t.Fatalf("gateway with an untrusted server certificate: %v", err)
	}
	t.Logf("untrusted server: %v", err)

	// An agent without its client certificate, or with a wrong token.
	noCert := agentConfig(t, url, map[string]string{"api": up.URL})
	noCert.NATS.Token, noCert.NATS.TLSCAFile = "s3cret", ca.CertFile
	wrongToken := agentConfig(t, url, map[string]string{"api": up.URL})
	wrongToken.NATS.Token = "guess"
	wrongToken.NATS.TLSCAFile, wrongToken.NATS.TLSCertFile, wrongToken.NATS.TLSKeyFile = ca.CertFile, agentCert.CertFile, agentCert.KeyFile
	for name, c := range map[string]*agent.AgentUpstream{"no client certificate": noCert, "wrong token": wrongToken} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		u, err := agent.StartUpstream(ctx, c, harness.Logger(t))
		late := ctx.Err()
		cancel()
		if err == nil {
			u.Kill()
			t.Errorf("%s: the agent started", name)
			continue
		}
		if late != nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: not a prompt one-line error: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}
