package integration

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/integration/barerelay"
	"github.com/switchboard/switchboard/internal/natstest"
)

// BenchmarkRelayFloor puts the relay next to its floor, the bare relay of
// package barerelay (one NATS request per HTTP request, nothing else), a
// plain reverse proxy and the upstream reached directly, 16 clients each.
// All in one process; cpu-µs/req is the whole process's CPU per request.
// The same comparison with every server a process of its own is the
// README's (HTTP relay, "The floor").
func BenchmarkRelayFloor(b *testing.B) {
	direct, relayed, proxied := benchSetup(b)
	bare := bareNATSRelay(b, direct)
	for _, target := range []struct{ name, url string }{
		{"direct", direct}, {"proxy", proxied}, {"bare-nats", bare}, {"relay", relayed},
	} {
		b.Run("c16/"+target.name, func(b *testing.B) {
			smallLoad(b, benchClient(), target.url+"/small", 16)
		})
	}
}

// bareNATSRelay starts the bare relay (package barerelay) in front of
// upstream and returns its base URL: the front on an in-process connection
// to its own nats-server, the back on a TCP connection, as a gateway and
// an agent would be.
func bareNATSRelay(b *testing.B, upstream string) string {
	b.Helper()
	ns := natstest.RunServer(b, nil)
	front, err := nats.Connect("", nats.InProcessServer(ns.Server))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(front.Close)
	client := benchClient()
	b.Cleanup(client.CloseIdleConnections)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	if err := barerelay.Back(ctx, natstest.Connect(b, ns.URL()), client, upstream, nil, 16); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(barerelay.Front(front))
	b.Cleanup(srv.Close)
	return srv.URL
}
