package integration

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// BenchmarkRelayWebSocket measures WebSocket echo round trips side by
// side in one run: "direct" to the coder/websocket echo upstream, "relay"
// through the gateway's /relay and an agent over NATS (all in this
// process), "haproxy" through one HAProxy hop (mode http, as
// ../shared/peerbench/PEERS.md sets it up) and "ssh-tunnel" through an
// `ssh -R` tunnel over loopback (a private sshd, see sshTunnel); the last
// two are left out when their binaries are missing. msgs: 64-byte
// messages on 16 connections (each connection one message in flight),
// reported as msgs/s; large: 1 MiB messages on one connection, reported
// as MB/s of echoed payload (each way).
//
//	for r in 1 2 3; do go test ./integration/ -run '^$' -bench 'BenchmarkRelayWebSocket' -benchtime 1s; done
func BenchmarkRelayWebSocket(b *testing.B) {
	up := newWSUpstream(b)
	quiet := slog.New(slog.DiscardHandler)
	cfg := harness.Config(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gw, err := gateway.Start(ctx, cfg, quiet)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.Shutdown(sctx)
	})
	harness.WaitReady(b, gw.URL())
	u, err := agent.StartUpstream(ctx, agentConfig(b, gw.EmbeddedURL(), map[string]string{"ws": up.URL}), quiet)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u.Shutdown(sctx)
	})
	targets := []struct{ name, url string }{
		{"direct", wsURL(up.URL, "/echo")},
		{"relay", wsURL(gw.URL(), "/relay/ws/echo")},
	}
	if hap, ok := haproxyFront(b, up.URL); ok {
		targets = append(targets, struct{ name, url string }{"haproxy", wsURL(hap, "/echo")})
	}
	if tunnel, ok := sshTunnel(b, up.URL); ok {
		targets = append(targets, struct{ name, url string }{"ssh-tunnel", wsURL(tunnel, "/echo")})
	}
	for _, tg := range targets {
		b.Run("msgs64-c16/"+tg.name, func(b *testing.B) {
			const conc = 16
			conns := make([]*websocket.Conn, conc)
			for i := range conns {
				conns[i] = dialWS(b, ctx, tg.url, nil)
				defer conns[i].CloseNow()
			}
			msg := make([]byte, 64)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := conns[i]
					for j := i; j < b.N; j += conc {
						if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
							b.Error(err)
							return
						}
						if _, _, err := c.Read(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
	for _, tg := range targets {
		b.Run("1MiB-c1/"+tg.name, func(b *testing.B) {
			c := dialWS(b, ctx, tg.url, nil)
			defer c.CloseNow()
			msg := make([]byte, 1<<20)
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for range b.N {
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// haproxyFront runs haproxy in front of upstream (an http:// base URL)
// with the configuration of ../shared/peerbench/PEERS.md (mode http,
// keep-alive; WebSockets are tunnelled after the 101) and returns its base
// URL, or false when haproxy is not installed.
func haproxyFront(b *testing.B, upstream string) (string, bool) {
	b.Helper()
	bin, err := haproxyOnce()
	if err != nil {
		b.Logf("haproxy not available: no haproxy comparison (%v)", err)
		return "", false
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conf := filepath.Join(b.TempDir(), "haproxy.cfg")
	err = os.WriteFile(conf, []byte(strings.Join([]string{
		"global", "    maxconn 4096",
		"defaults", "    mode http", "    timeout connect 5s", "    timeout client 60s", "    timeout server 60s",
		"    timeout tunnel 1h", "    option http-keep-alive", "    http-reuse always",
		"frontend fe", "    bind " + addr, "    default_backend be",
		"backend be", "    server up1 " + strings.TrimPrefix(upstream, "http://"),
	}, "\n")+"\n"), 0o600)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", conf)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start haproxy: %v", err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	natstest.Eventually(b, 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("haproxy not listening: %v\n%s", err, out.tail(2048))
		}
		return c.Close()
	})
	return "http://" + addr, true
}
