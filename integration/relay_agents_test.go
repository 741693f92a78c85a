package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// namedUpstream answers its name; /slow blocks until release is closed.
func namedUpstream(t testing.TB, name string, arrived chan<- string, release <-chan struct{}) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- name
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRelayLoadBalancing(t *testing.T) {
	gw := harness.StartEmbedded(t, relayConfig)
	for _, n := range []string{"one", "two"} {
		startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"lb": namedUpstream(t, n, nil, nil).URL}))
	}
	seen := map[string]int{}
	for i := 0; i < 60; i++ {
		r := do(t, "GET", gw.URL()+"/relay/lb/x", nil, nil)
		if r.status != 200 {
			t.Fatalf("request %d: %d %q", i, r.status, r.body)
		}
		seen[r.body]++
	}
	if seen["one"] < 5 || seen["two"] < 5 {
		t.Fatalf("load not shared: %v", seen)
	}
	// Discovery: both agents answer $SRV.PING for the upstream.
	nc, err := nats.Connect(gw.EmbeddedURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	svc, _ := subjects.RelayService("lb")
	subj, _ := micro.ControlSubject(micro.PingVerb, svc, "")
	inbox := nc.NewInbox()
	sub, _ := nc.SubscribeSync(inbox)
	defer sub.Unsubscribe()
	nc.PublishRequest(subj, inbox, nil)
	for i := 0; i < 2; i++ {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("ping reply %d: %v", i, err)
		}
		var p micro.Ping
		if json.Unmarshal(m.Data, &p) != nil || p.Name != svc {
			t.Fatalf("ping reply %q", m.Data)
		}
	}
}

// TestRelayAgentCrash kills the agent serving a request: that request
// fails with 502 AGENT_LOST within a few seconds, and the following
// requests go to the other agent at once.
func TestRelayAgentCrash(t *testing.T) {
	arrived := make(chan string, 4)
	gw := harness.StartEmbedded(t, relayConfig)
	a := startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ha": namedUpstream(t, "a", arrived, nil).URL}))

	got := make(chan result, 1)
	go func() { got <- do(t, "GET", gw.URL()+"/relay/ha/slow", nil, nil) }()
	if n := <-arrived; n != "a" {
		t.Fatalf("arrived at %s", n)
	}
	// The agent may hold its ack back briefly; wait until the gateway has it.
	natstest.Eventually(t, 5*time.Second, func() error {
		if _, body := get(t, gw.URL()+"/metrics"); !strings.Contains(body, "switchboard_relay_open_seconds_count 1") {
			return fmt.Errorf("request not acknowledged yet")
		}
		return nil
	})
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"ha": namedUpstream(t, "b", arrived, nil).URL}))
	killed := time.Now()
	a.Kill()
	// A request racing the server's noticing of the crash may wait for one
	// ack timeout; once it did, nothing waits.
	natstest.Eventually(t, 10*time.Second, func() error {
		if r := do(t, "GET", gw.URL()+"/relay/ha/fast", nil, nil); r.status != 200 || r.body != "b" {
			return fmt.Errorf("%d %q", r.status, r.body)
		}
		return nil
	})
	for i := 0; i < 20; i++ {
		start := time.Now()
		r := do(t, "GET", gw.URL()+"/relay/ha/fast", nil, nil)
		if r.status != 200 || r.body != "b" {
			t.Fatalf("request %d after the crash: %d %q", i, r.status, r.body)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("request %d after the crash took %s", i, d)
		}
	}
	select {
	case r := <-got:
		wantCode(t, r, 502, "AGENT_LOST")
		if d := time.Since(killed); d > 10*time.Second {
			t.Fatalf("agent loss noticed after %s", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("request on the crashed agent never ended")
	}
}

// TestRelayAgentDrain stops an agent gracefully while it serves a request:
// the request completes, new requests go to the other agent, and the
// drained agent stops once its request is done.
func TestRelayAgentDrain(t *testing.T) {
	arrived := make(chan string, 4)
	release := make(chan struct{})
	gw := harness.StartEmbedded(t, relayConfig)
	a := startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"d": namedUpstream(t, "a", arrived, release).URL}))
	got := make(chan result, 1)
	go func() { got <- do(t, "GET", gw.URL()+"/relay/d/slow", nil, nil) }()
	<-arrived
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"d": namedUpstream(t, "b", arrived, nil).URL}))
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stopped <- a.Shutdown(ctx)
	}()
	natstest.Eventually(t, 10*time.Second, func() error {
		// The draining agent takes nothing new.
		if r := do(t, "GET", gw.URL()+"/relay/d/fast", nil, nil); r.status != 200 || r.body != "b" {
			return fmt.Errorf("got %d %q", r.status, r.body)
		}
		return nil
	})
	for i := 0; i < 20; i++ {
		if r := do(t, "GET", gw.URL()+"/relay/d/fast", nil, nil); r.status != 200 || r.body != "b" {
			t.Fatalf("request %d during drain: %d %q", i, r.status, r.body)
		}
	}
	select {
	case err := <-stopped:
		t.Fatalf("agent stopped (%v) with a request in flight", err)
	default:
	}
	close(release)
	if r := <-got; r.status != 200 || r.body != "a" {
		t.Fatalf("in-flight request: %d %q", r.status, r.body)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("drain: %v", err)
	}
}

// TestRelayAcrossCluster relays through a gateway on node 1 to an agent
// connected to node 3 only.
func TestRelayAcrossCluster(t *testing.T) {
	c := natstest.NewCluster(t, 3)
	gws := harness.StartN(t, 1, c.Servers[0].ClientURL(), func(cfg *gateway.Config) {
		relayConfig(cfg)
		cfg.JetStream.Replicas = 3
	})
	up := echoUpstream(t)
	startAgent(t, agentConfig(t, c.Servers[2].ClientURL(), map[string]string{"far": up.URL}))
	natstest.Eventually(t, 10*time.Second, func() error {
		r := do(t, "POST", gws[0].URL()+"/relay/far/p%2Fq?x=1", strings.NewReader("over the routes"), nil)
		if r.status != 200 {
			return fmt.Errorf("%d %q", r.status, r.body)
		}
		if e := decodeEcho(t, r); e.URI != "/p%2Fq?x=1" || e.Body != "over the routes" {
			return fmt.Errorf("upstream saw %+v", e)
		}
		return nil
	})
	// A streamed body both ways across the routes.
	big := strings.Repeat("0123456789", 100_000)
	r := do(t, "POST", gws[0].URL()+"/relay/far/big", strings.NewReader(big), nil)
	if r.status != 200 || decodeEcho(t, r).Body != big {
		t.Fatalf("large body across the cluster: %d (%d bytes)", r.status, len(r.body))
	}
}

// TestRelayAgentClient relays through `agent client` → NATS → `agent
// upstream` → target.
func TestRelayAgentClient(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"api": up.URL}))

	l := agent.ClientLoader()
	l.Getenv = func(string) string { return "" }
	var cfg agent.AgentClient
	if _, err := l.Load([]string{"--nats", gw.EmbeddedURL(), "--listen", "127.0.0.1:0", "--upstream", "api", "--agent-wait", "500ms"}, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := agent.StartClient(ctx, &cfg, harness.Logger(t).With("agent", "client"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Shutdown(ctx)
	base := "http://" + cl.Addr()
	r := do(t, "PATCH", base+"/v1/x%2Fy?q=2", strings.NewReader("via client"), map[string]string{"X-Test": "1"})
	e := decodeEcho(t, r)
	if r.status != 200 || e.Method != "PATCH" || e.URI != "/v1/x%2Fy?q=2" || e.Body != "via client" || http.Header(e.Header).Get("X-Test") != "1" {
		t.Fatalf("%d %+v", r.status, e)
	}
	if r := do(t, "GET", base+"/x?status=418", nil, nil); r.status != 418 {
		t.Fatalf("status = %d", r.status)
	}

	// Every agent of the upstream gone: 503 NO_AGENT from the client too.
	var cfg2 agent.AgentClient
	l.Load([]string{"--nats", gw.EmbeddedURL(), "--listen", "127.0.0.1:0", "--upstream", "missing", "--agent-wait", "300ms"}, &cfg2)
	cl2, err := agent.StartClient(ctx, &cfg2, harness.Logger(t).With("agent", "client2"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Shutdown(ctx)
	wantCode(t, do(t, "GET", "http://"+cl2.Addr()+"/", nil, nil), 503, "NO_AGENT")
}

// TestRelayAgentPermissions proves that, with embedded.agents, an agent
// whose credentials are for upstream a can serve a but can neither serve
// nor read b.
func TestRelayAgentPermissions(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, func(c *gateway.Config) {
		relayConfig(c)
		c.Relay.AgentWait = 500 * time.Millisecond
		c.Embedded.Agents = []gateway.AgentUser{{User: "ua", Password: "pa", Upstreams: []string{"a"}}}
	})
	cfg := agentConfig(t, gw.EmbeddedURL(), map[string]string{"a": up.URL})
	cfg.NATS.User, cfg.NATS.Password = "ua", "pa"
	startAgent(t, cfg)
	if r := do(t, "GET", gw.URL()+"/relay/a/x", nil, nil); r.status != 200 {
		t.Fatalf("/relay/a = %d %q", r.status, r.body)
	}
	// Large bodies both ways need no more than the upstream's own subjects.
	big := strings.Repeat("z", 300_000)
	if r := do(t, "POST", gw.URL()+"/relay/a/x", strings.NewReader(big), nil); r.status != 200 || decodeEcho(t, r).Body != big {
		t.Fatalf("streamed /relay/a = %d", r.status)
	}

	// Without credentials nobody connects.
	if nc, err := nats.Connect(gw.EmbeddedURL()); err == nil {
		nc.Close()
		t.Fatal("anonymous client connected")
	}
	// With a's credentials: subscribing to b's or anybody's subjects fails.
	var mu sync.Mutex
	var violations []string
	nc, err := nats.Connect(gw.EmbeddedURL(), nats.UserInfo("ua", "pa"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		violations = append(violations, err.Error())
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	reqB, _ := subjects.RelayRequest("b")
	inB, _ := subjects.RelayInbox("b")
	forbidden := []string{reqB, inB + ".>", "_INBOX.>", "sb.>", ">"}
	for _, s := range forbidden {
		if _, err := nc.QueueSubscribe(s, "sb-relay", func(*nats.Msg) {}); err != nil {
			t.Fatalf("subscribe %s: %v", s, err)
		}
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range forbidden {
			found := false
			for _, v := range violations {
				found = found || (strings.Contains(v, "Permissions Violation for Subscription") && strings.Contains(v, `"`+s+`"`))
			}
			if !found {
				return fmt.Errorf("no permissions violation for %s in %v", s, violations)
			}
		}
		return nil
	})
	// Publishing a forged open request for b is refused too.
	nc.Publish(reqB, []byte("x"))
	natstest.Eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, v := range violations {
			if strings.Contains(v, "Permissions Violation for Publish") && strings.Contains(v, reqB) {
				return nil
			}
		}
		return fmt.Errorf("no publish violation in %v", violations)
	})

	// An agent with a's credentials that tries to serve b fails to start
	// and serves nothing.
	bad := agentConfig(t, gw.EmbeddedURL(), map[string]string{"b": up.URL})
	bad.NATS.User, bad.NATS.Password = "ua", "pa"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if u, err := agent.StartUpstream(ctx, bad, harness.Logger(t)); err == nil || !strings.Contains(err.Error(), "permissions violation") {
		if u != nil {
			u.Kill()
		}
		t.Fatalf("agent for b with a's credentials started: %v", err)
	}
	wantCode(t, do(t, "GET", gw.URL()+"/relay/b/x", nil, nil), 503, "NO_AGENT")
	if r := do(t, "GET", gw.URL()+"/relay/a/x", nil, nil); r.status != 200 {
		t.Fatalf("/relay/a after the b attempt = %d", r.status)
	}

	// The same credentials run `agent client` for a, streamed bodies included.
	l := agent.ClientLoader()
	l.Getenv = func(string) string { return "" }
	var ccfg agent.AgentClient
	if _, err := l.Load([]string{"--nats", gw.EmbeddedURL(), "--nats-user", "ua", "--nats-password", "pa", "--listen", "127.0.0.1:0", "--upstream", "a"}, &ccfg); err != nil {
		t.Fatal(err)
	}
	cl, err := agent.StartClient(ctx, &ccfg, harness.Logger(t).With("agent", "client"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Shutdown(ctx)
	if r := do(t, "PUT", "http://"+cl.Addr()+"/x", strings.NewReader(big), nil); r.status != 200 || decodeEcho(t, r).Body != big {
		t.Fatalf("agent client with a's credentials: %d", r.status)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		if strings.Contains(v, "sb.relay.a") {
			t.Fatalf("permission violation on a's own subjects: %s", v)
		}
	}
}
