package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

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

// TestExternalNATSTLSCreds: the same over TLS with a creds file (JWT
// operator mode): the gateway and the agent connect with their creds and a
// client certificate, a request is relayed; an agent without creds is
// refused.
func TestExternalNATSTLSCreds(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	srv := ca.Server("nats")
	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: srv.CertFile, KeyFile: srv.KeyFile, CaFile: ca.CertFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	opClaims, resolver, sysAccount, account := operatorMode(t)
	ns := natstest.RunServer(t, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, tlsCfg, 5
		o.TrustedOperators = []*jwt.OperatorClaims{opClaims}
		o.AccountResolver = resolver
		o.SystemAccount = sysAccount
	})
	url := "tls://" + ns.Addr().String()
	gwCert, agentCert := ca.Client("gateway"), ca.Client("agent")

	cfg := harnessConfig(t)
	cfg.NATS.URL, cfg.NATS.Creds = url, userCreds(t, account, "gateway")
	cfg.NATS.TLSCAFile, cfg.NATS.TLSCertFile, cfg.NATS.TLSKeyFile = ca.CertFile, gwCert.CertFile, gwCert.KeyFile
	gw := harness.Start(t, cfg)

	up := echoUpstream(t)
	ac := agentConfig(t, url, map[string]string{"api": up.URL})
	ac.NATS.Creds = userCreds(t, account, "agent")
	ac.NATS.TLSCAFile, ac.NATS.TLSCertFile, ac.NATS.TLSKeyFile = ca.CertFile, agentCert.CertFile, agentCert.KeyFile
	startAgent(t, ac)
	if r := do(t, "POST", gw.URL()+"/relay/api/x", strings.NewReader("creds"), nil); r.status != 200 || !strings.Contains(r.body, `"body":"creds"`) {
		t.Fatalf("relay: %d %s", r.status, r.body)
	}

	noCreds := agentConfig(t, url, map[string]string{"api": up.URL})
	noCreds.NATS.TLSCAFile, noCreds.NATS.TLSCertFile, noCreds.NATS.TLSKeyFile = ca.CertFile, agentCert.CertFile, agentCert.KeyFile
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u, err := agent.StartUpstream(ctx, noCreds, harness.Logger(t))
	if err == nil {
		u.Kill()
		t.Fatal("an agent without creds started")
	}
	if ctx.Err() != nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("no creds: not a prompt one-line error: %v", err)
	}
	t.Logf("no creds: %v", err)
}

// operatorMode makes an operator, a system account and one account with
// JetStream, and a resolver holding both accounts' JWTs.
func operatorMode(t *testing.T) (*jwt.OperatorClaims, server.AccountResolver, string, nkeys.KeyPair) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	op, err := nkeys.CreateOperator()
	must(err)
	opPub, err := op.PublicKey()
	must(err)
	opClaims := jwt.NewOperatorClaims(opPub)
	resolver := &server.MemAccResolver{}
	newAccount := func(js bool) (nkeys.KeyPair, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		c := jwt.NewAccountClaims(pub)
		if js {
			c.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := c.Encode(op)
		must(err)
		must(resolver.Store(pub, token))
		return kp, pub
	}
	_, sysPub := newAccount(false)
	account, _ := newAccount(true)
	return opClaims, resolver, sysPub, account
}

// userCreds writes a creds file of a new user of account.
func userCreds(t *testing.T, account nkeys.KeyPair, name string) string {
	t.Helper()
	u, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := u.PublicKey()
	c := jwt.NewUserClaims(pub)
	c.Name = name
	token, err := c.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := u.Seed()
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
