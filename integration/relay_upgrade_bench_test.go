package integration

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/gateway"
)

// BenchmarkRelayWebSocket measures WebSocket echo round trips side by
// side in one run: "direct" to the coder/websocket echo upstream, "relay"
// through the gateway's /relay and an agent over NATS (all in this
// process). msgs: 64-byte messages on 16 connections (each connection
// one message in flight), reported as msgs/s; large: 1 MiB messages on
// one connection, reported as MB/s of echoed payload (each way).
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
