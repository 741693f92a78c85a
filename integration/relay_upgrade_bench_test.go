package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/natstest"
)

// BenchmarkRelayWebSocket measures WebSocket echo round trips side by
// side in one run: "direct" to the coder/websocket echo upstream, "relay"
// through the gateway's /relay and an agent over NATS (all in this
// process), "relay-procs" the same with the gateway and the agent as
// processes of their own (as deployed, and as haproxy, sshd and ssh run),
// "haproxy" through one HAProxy hop (mode http, as
// ../shared/peerbench/PEERS.md sets it up) and "ssh-tunnel" through an
// `ssh -R` tunnel over loopback (a private sshd, see sshTunnel); the last
// two are left out when their binaries are missing. msgs: 64-byte
// messages on 16 connections (each connection one message in flight),
// reported as msgs/s; large: 1 MiB messages on one connection, reported
// as MB/s of echoed payload (each way).
//
//	for r in 1 2 3; do go test ./integration/ -run '^$' -bench 'BenchmarkRelayWebSocket$' -benchtime 1s; done
func BenchmarkRelayWebSocket(b *testing.B) {
	ctx, targets := wsBenchTargets(b)
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

// relayProcesses starts the gateway binary (embedded NATS on a free
// loopback port) and the agent binary serving upstream as "ws", and
// returns the gateway's base URL.
func relayProcesses(b *testing.B, upstream string) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	natsAddr := l.Addr().String()
	l.Close()
	gw := harness.StartProcess(b, "--embedded-listen", natsAddr, "--data-dir", b.TempDir())
	a := exec.Command(harness.Binary(b, "agent"), "upstream", "--nats", "nats://"+natsAddr,
		"--name", "ws", "--target", upstream, "--log-level", "warn")
	var out lockedBuffer
	a.Stdout, a.Stderr = &out, &out
	if err := a.Start(); err != nil {
		b.Fatalf("start agent: %v", err)
	}
	b.Cleanup(func() { _ = a.Process.Kill(); _ = a.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	natstest.Eventually(b, 30*time.Second, func() error {
		c, _, err := websocket.Dial(ctx, wsURL(gw.URL(), "/relay/ws/echo"), nil)
		if err != nil {
			return fmt.Errorf("through the relay processes: %v\n%s", err, out.tail(2048))
		}
		return c.CloseNow()
	})
	return gw.URL()
}

// wsTarget is one way to reach the WebSocket echo upstream.
type wsTarget struct{ name, url string }

// wsBenchTargets starts the echo upstream and every way to reach it that
// this machine has (see BenchmarkRelayWebSocket).
func wsBenchTargets(b *testing.B) (context.Context, []wsTarget) {
	b.Helper()
	up := newWSUpstream(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancel)
	gw := quietRelay(b, map[string]string{"ws": up.URL})
	targets := []wsTarget{
		{"direct", wsURL(up.URL, "/echo")},
		{"relay", wsURL(gw, "/relay/ws/echo")},
	}
	targets = append(targets, wsTarget{"relay-procs", wsURL(relayProcesses(b, up.URL), "/relay/ws/echo")})
	if hap, ok := haproxyFront(b, up.URL); ok {
		targets = append(targets, wsTarget{"haproxy", wsURL(hap, "/echo")})
	}
	if tunnel, ok := sshTunnel(b, up.URL); ok {
		targets = append(targets, wsTarget{"ssh-tunnel", wsURL(tunnel, "/echo")})
	}
	return ctx, targets
}

// BenchmarkRelayWebSocketInterleaved runs the loads of
// BenchmarkRelayWebSocket on every target in interleaved slices, so that
// the load of a shared machine, which changes from second to second,
// weighs on all targets alike: each of the b.N cycles gives every target a
// slice of the 64-byte load (16 connections), then every target a slice of
// the 1 MiB load (1 connection), in turn. It reports each target's rate
// over all its slices (msgs/s and MB/s each way) and the relay's ratio to
// each other target.
//
//	go test ./integration/ -run '^$' -bench 'BenchmarkRelayWebSocketInterleaved' -benchtime 6x
func BenchmarkRelayWebSocketInterleaved(b *testing.B) {
	const (
		conc  = 16
		slice = 300 * time.Millisecond
	)
	ctx, targets := wsBenchTargets(b)
	small := make([][]*websocket.Conn, len(targets))
	big := make([]*websocket.Conn, len(targets))
	for i, tg := range targets {
		for range conc {
			c := dialWS(b, ctx, tg.url, nil)
			defer c.CloseNow()
			small[i] = append(small[i], c)
		}
		big[i] = dialWS(b, ctx, tg.url, nil)
		defer big[i].CloseNow()
	}
	msgs := make([]int64, len(targets))
	bytes := make([]int64, len(targets))
	msgTime := make([]time.Duration, len(targets))
	byteTime := make([]time.Duration, len(targets))
	small64, large := make([]byte, 64), make([]byte, 1<<20)
	b.ResetTimer()
	for range b.N {
		for i := range targets {
			n, d := echoFor(b, ctx, small[i], small64, slice)
			msgs[i] += n
			msgTime[i] += d
		}
		for i := range targets {
			n, d := echoFor(b, ctx, big[i:i+1], large, slice)
			bytes[i] += n << 20
			byteTime[i] += d
		}
	}
	b.StopTimer()
	rate := func(i int) (float64, float64) {
		return float64(msgs[i]) / msgTime[i].Seconds(), float64(bytes[i]) / 1e6 / byteTime[i].Seconds()
	}
	relay := -1
	for i, tg := range targets {
		m, mb := rate(i)
		b.ReportMetric(m, tg.name+"-msgs/s")
		b.ReportMetric(mb, tg.name+"-MB/s")
		if tg.name == "relay" {
			relay = i
		}
	}
	rm, rmb := rate(relay)
	for i, tg := range targets {
		if i == relay {
			continue
		}
		m, mb := rate(i)
		b.ReportMetric(rm/m, "relay/"+tg.name+"-msgs")
		b.ReportMetric(rmb/mb, "relay/"+tg.name+"-MB")
	}
}

// echoFor echoes msg on every connection of conns (one message in flight
// each) for about d and returns the echoes done and the time taken.
func echoFor(b *testing.B, ctx context.Context, conns []*websocket.Conn, msg []byte, d time.Duration) (int64, time.Duration) {
	var (
		wg    sync.WaitGroup
		total atomic.Int64
	)
	start := time.Now()
	deadline := start.Add(d)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					b.Error(err)
					return
				}
				if _, _, err := c.Read(ctx); err != nil {
					b.Error(err)
					return
				}
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	return total.Load(), time.Since(start)
}
