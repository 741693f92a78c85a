package integration

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/tlstest"
)

// benchTarget is one way to reach the upstream, with the client for it.
type benchTarget struct {
	name   string
	url    string
	client func() *http.Client
}

// tlsBenchSetup returns the targets compared by the TLS benchmarks: the
// relay without TLS, the relay with TLS on both hops (caller → gateway
// HTTPS, agent → embedded NATS over TLS with a client certificate), the
// same with the agent on wss://gateway/nats, and an `ssh -R` tunnel to the
// same upstream (skipped when ssh/sshd are missing).
func tlsBenchSetup(b *testing.B) []benchTarget {
	b.Helper()
	direct, relayed, _ := benchSetup(b)
	plain := func() *http.Client { return benchClient() }
	targets := []benchTarget{{"relay", relayed, plain}}

	ca := tlstest.NewCA(b, "bench")
	srv, agentCert := ca.Server("gateway"), ca.Client("agent")
	cfg := harness.Config(b)
	cfg.Log.Level = "error"
	cfg.TLS.CertFile, cfg.TLS.KeyFile = srv.CertFile, srv.KeyFile
	cfg.Embedded.TLSCertFile, cfg.Embedded.TLSKeyFile = srv.CertFile, srv.KeyFile
	cfg.Embedded.TLSCAFile, cfg.Embedded.TLSVerifyClients = ca.CertFile, true
	cfg.Embedded.Websocket = true
	cfg.Embedded.Agents = []gateway.AgentUser{{User: "ua", Password: "pa", Upstreams: []string{"bench", "benchws"}}}
	gw := startQuietGateway(b, cfg)
	quiet := slog.New(slog.DiscardHandler)
	for name, url := range map[string]string{"bench": gw.EmbeddedURL(), "benchws": "wss" + strings.TrimPrefix(gw.URL(), "https") + gateway.NATSWebsocketPath} {
		ac := agentConfig(b, url, map[string]string{name: direct})
		ac.NATS.User, ac.NATS.Password = "ua", "pa"
		ac.NATS.TLSCAFile, ac.NATS.TLSCertFile, ac.NATS.TLSKeyFile = ca.CertFile, agentCert.CertFile, agentCert.KeyFile
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		u, err := agent.StartUpstream(ctx, ac, quiet)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { u.Kill() })
	}
	tlsc := func() *http.Client {
		c := benchClient()
		c.Transport.(*http.Transport).TLSClientConfig = ca.ClientConfig(tlstest.Files{})
		return c
	}
	tlsh1 := func() *http.Client {
		c := tlsc()
		c.Transport.(*http.Transport).ForceAttemptHTTP2 = false
		return c
	}
	targets = append(targets,
		benchTarget{"relay-tls", gw.URL() + "/relay/bench", tlsc},
		benchTarget{"relay-tls-h1", gw.URL() + "/relay/bench", tlsh1},
		benchTarget{"relay-tls-wss-agent", gw.URL() + "/relay/benchws", tlsc})
	if tunnel, ok := sshTunnel(b, direct); ok {
		targets = append(targets, benchTarget{"ssh-tunnel", tunnel, plain})
	}
	return targets
}

func startQuietGateway(b *testing.B, cfg *gateway.Config) *gateway.Gateway {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := gateway.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(sctx)
	})
	if err := g.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	return g
}

// sshTunnel starts a private sshd on loopback and `ssh -N -R 0:upstream`
// against it, the way a remote network exposes a service through an ssh
// server: callers use the port sshd allocated, their bytes cross the
// encrypted ssh connection to the ssh client next to the upstream. It
// returns the tunnel's base URL, or false when ssh or sshd is missing.
func sshTunnel(b *testing.B, upstream string) (string, bool) {
	b.Helper()
	sshd, err1 := exec.LookPath("sshd")
	if err1 != nil {
		sshd = "/usr/sbin/sshd"
	}
	ssh, err2 := exec.LookPath("ssh")
	if _, err := os.Stat(sshd); err != nil || err2 != nil {
		b.Log("ssh or sshd not installed: no ssh tunnel comparison")
		return "", false
	}
	me, err := user.Current()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			b.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "client.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	// sshd cannot listen on port 0: take a free port and release it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	conf := filepath.Join(dir, "sshd_config")
	os.WriteFile(conf, []byte(strings.Join([]string{
		"Port " + port, "ListenAddress 127.0.0.1", "HostKey " + filepath.Join(dir, "host"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"), "PermitRootLogin prohibit-password",
		"PasswordAuthentication no", "StrictModes no", "UsePAM no", "PidFile none", "AllowTcpForwarding yes",
	}, "\n")+"\n"), 0o600)
	os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	d := exec.Command(sshd, "-D", "-e", "-f", conf)
	if err := d.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Process.Kill(); d.Wait() })
	up := strings.TrimPrefix(upstream, "http://")
	c := exec.Command(ssh, "-N", "-v", "-i", filepath.Join(dir, "client"), "-p", port,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes",
		"-o", "ConnectionAttempts=20", "-R", "127.0.0.1:0:"+up, me.Username+"@127.0.0.1")
	stderr, _ := c.StderrPipe()
	if err := c.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Process.Kill(); c.Wait() })
	allocated := regexp.MustCompile(`Allocated port (\d+) for remote forward`)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := allocated.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case p := <-found:
		return "http://127.0.0.1:" + p, true
	case <-time.After(20 * time.Second):
		b.Fatal("ssh -R: no port allocated within 20 s")
	}
	return "", false
}

// BenchmarkRelayTLS compares the relay with TLS on both hops with the
// relay without TLS and with an `ssh -R` tunnel: small GETs (c1, c16:
// req/s, latency) and 64 MiB bodies both ways (MB/s).
func BenchmarkRelayTLS(b *testing.B) {
	const size = 64 << 20
	targets := tlsBenchSetup(b)
	for _, conc := range []int{1, 16} {
		for _, tg := range targets {
			b.Run(fmt.Sprintf("small/c%d/%s", conc, tg.name), func(b *testing.B) {
				smallLoad(b, tg.client(), tg.url+"/small", conc)
			})
		}
	}
	for _, dir := range []string{"download", "upload"} {
		for _, tg := range targets {
			b.Run("64MiB/"+dir+"/"+tg.name, func(b *testing.B) {
				c := tg.client()
				defer c.CloseIdleConnections()
				b.SetBytes(size)
				for range b.N {
					benchTransfer(b, c, dir, tg.url, size)
				}
			})
		}
	}
}
