package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// agentUpstreams lists, for every agent user of accounts.conf, the
// upstreams it serves. Its permissions must be AgentPermissions(upstreams).
var agentUpstreams = map[string][]string{
	"agent-demo": {"demo"},
}

// natsEnv sets the variables nats.conf reads, as run-cluster.sh does for
// node n1, and returns the secrets.
func natsEnv(t *testing.T) map[string]string {
	t.Helper()
	secrets := map[string]string{
		"NATS_ROUTE_PASSWORD":    "routePw1",
		"SB_GATEWAY_PASSWORD":    "gatewayPw1",
		"SB_SYS_PASSWORD":        "sysPw1",
		"SB_AGENT_DEMO_PASSWORD": "agentDemoPw1",
	}
	env := map[string]string{
		"NATS_SERVER_NAME":  "n1",
		"NATS_HOST":         "127.0.0.1",
		"NATS_CLIENT_PORT":  "4222",
		"NATS_HTTP_PORT":    "8222",
		"NATS_CLUSTER_PORT": "6222",
		"NATS_WS_PORT":      "8443",
		"NATS_LEAF_PORT":    "7422",
		"NATS_ROUTES":       "[nats-route://route:routePw1@127.0.0.1:6222, nats-route://route:routePw1@127.0.0.1:6223, nats-route://route:routePw1@127.0.0.1:6224]",
		"NATS_STORE_DIR":    t.TempDir(),
		"NATS_PID_FILE":     t.TempDir() + "/nats.pid",
	}
	for k, v := range secrets {
		env[k] = v
	}
	for _, k := range natsConfVars(t) {
		if _, ok := env[k]; !ok {
			t.Fatalf("nats.conf reads $%s, which natsEnv does not set", k)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	return secrets
}

func loadNATSConfig(t *testing.T) (*server.Options, map[string]string) {
	t.Helper()
	secrets := natsEnv(t)
	opts, err := server.ProcessConfigFile("nats/nats.conf")
	if err != nil {
		t.Fatalf("nats/nats.conf: %v", err)
	}
	return opts, secrets
}

// TestNATSConfigParses checks nats.conf the way `nats-server -t` does and
// asserts the cluster shape: JetStream on file storage, three routes with
// auth, client/monitoring/WebSocket/leafnode listeners, and the accounts.
func TestNATSConfigParses(t *testing.T) {
	opts, secrets := loadNATSConfig(t)
	if !opts.JetStream || opts.StoreDir == "" || opts.JetStreamMaxStore <= 0 {
		t.Errorf("jetstream: enabled=%v store=%q max_file=%d, want file storage", opts.JetStream, opts.StoreDir, opts.JetStreamMaxStore)
	}
	if opts.Cluster.Port != 6222 || opts.Cluster.Username != "route" || opts.Cluster.Password != secrets["NATS_ROUTE_PASSWORD"] {
		t.Errorf("cluster: port %d user %q: want 6222 with route auth", opts.Cluster.Port, opts.Cluster.Username)
	}
	if len(opts.Routes) != 3 {
		t.Errorf("routes: %d, want 3 (every node of the cluster)", len(opts.Routes))
	}
	if opts.Port != 4222 || opts.HTTPPort != 8222 || opts.Websocket.Port != 8443 || opts.LeafNode.Port != 7422 {
		t.Errorf("ports: client %d http %d ws %d leaf %d", opts.Port, opts.HTTPPort, opts.Websocket.Port, opts.LeafNode.Port)
	}
	if opts.SystemAccount != "SYS" {
		t.Errorf("system_account = %q, want SYS", opts.SystemAccount)
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	gw := users["gateway"]
	if gw == nil || gw.Account == nil || gw.Account.Name != "APP" || gw.Permissions != nil || gw.Password != secrets["SB_GATEWAY_PASSWORD"] {
		t.Fatalf("gateway user: want full access in account APP, got %+v", gw)
	}
	for name, u := range users {
		if name == "gateway" || name == "sys" {
			continue
		}
		ups, ok := agentUpstreams[name]
		if !ok {
			t.Errorf("user %q: not in agentUpstreams; declare the upstreams it serves", name)
			continue
		}
		if u.Account == nil || u.Account.Name != "APP" {
			t.Errorf("agent %q must be in account APP (with the gateways)", name)
		}
		want := subjects.AgentPermissions(ups)
		if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil {
			t.Errorf("agent %q has no publish/subscribe allow-lists", name)
			continue
		}
		if got := sortedCopy(u.Permissions.Publish.Allow); !slices.Equal(got, sortedCopy(want.Publish)) {
			t.Errorf("agent %q publish allow %v, want subjects.AgentPermissions(%v) = %v", name, got, ups, sortedCopy(want.Publish))
		}
		if got := sortedCopy(u.Permissions.Subscribe.Allow); !slices.Equal(got, sortedCopy(want.Subscribe)) {
			t.Errorf("agent %q subscribe allow %v, want subjects.AgentPermissions(%v) = %v", name, got, ups, sortedCopy(want.Subscribe))
		}
	}
	for name := range agentUpstreams {
		if users[name] == nil {
			t.Errorf("agentUpstreams names %q, which accounts.conf does not define", name)
		}
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// runNode starts one node from nats.conf on random loopback ports (routes
// dropped: the accounts and listeners are what is tested here).
func runNode(t *testing.T) (*natstest.Server, map[string]string) {
	t.Helper()
	fileOpts, secrets := loadNATSConfig(t)
	s := natstest.RunServer(t, func(o *server.Options) {
		*o = *fileOpts
		o.Port, o.HTTPPort = server.RANDOM_PORT, 0
		o.Websocket.Port, o.LeafNode.Port = server.RANDOM_PORT, server.RANDOM_PORT
		o.Cluster, o.Routes = server.ClusterOpts{}, nil
		o.StoreDir, o.PidFile = t.TempDir(), ""
		o.NoLog, o.NoSigs = true, true
	})
	return s, secrets
}

// permErrors collects the permission violations a connection reports.
type permErrors struct {
	mu   sync.Mutex
	errs []string
}

func (p *permErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
		p.mu.Lock()
		p.errs = append(p.errs, err.Error())
		p.mu.Unlock()
	}
}

func (p *permErrors) contains(s string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errs {
		if strings.Contains(e, s) {
			return nil
		}
	}
	return fmt.Errorf("no permission violation for %q yet (have %v)", s, p.errs)
}

func connect(t *testing.T, url, user, password string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.UserInfo(user, password)}, opts...)...)
	if err != nil {
		t.Fatalf("connect %s as %s: %v", url, user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// serveEcho answers every request on subj with "ok:" + data.
func serveEcho(t *testing.T, nc *nats.Conn, subj string) {
	t.Helper()
	sub, err := nc.Subscribe(subj, func(m *nats.Msg) { _ = m.Respond(append([]byte("ok:"), m.Data...)) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestNATSAccountsEnforced starts a node from the real config and proves
// the users: the gateway has JetStream and every subject; an agent user,
// connected directly or over WebSocket, serves its own upstream and is
// refused everything else.
func TestNATSAccountsEnforced(t *testing.T) {
	s, secrets := runNode(t)
	gw := connect(t, s.ClientURL(), "gateway", secrets["SB_GATEWAY_PASSWORD"])
	js, err := jetstream.New(gw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "deploy-test", Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("gateway cannot create a KV bucket: %v", err)
	}
	if _, err := connectErr(s.ClientURL(), "gateway", "wrong"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	demo, err := subjects.RelayRequest("demo")
	if err != nil {
		t.Fatal(err)
	}
	other, err := subjects.RelayRequest("other")
	if err != nil {
		t.Fatal(err)
	}
	for _, agentURL := range []string{s.ClientURL(), s.WebsocketURL()} {
		t.Run(strings.SplitN(agentURL, ":", 2)[0], func(t *testing.T) {
			var perms permErrors
			agent := connect(t, agentURL, "agent-demo", secrets["SB_AGENT_DEMO_PASSWORD"], nats.ErrorHandler(perms.handler))
			serveEcho(t, agent, demo)
			resp, err := gw.Request(demo, []byte("x"), 10*time.Second)
			if err != nil || string(resp.Data) != "ok:x" {
				t.Fatalf("request to the agent's own upstream: %v %v", resp, err)
			}
			if _, err := agent.Subscribe(other, func(*nats.Msg) {}); err != nil {
				t.Fatal(err)
			}
			_ = agent.Publish(other, []byte("not allowed"))
			_ = agent.Flush()
			natstest.Eventually(t, 10*time.Second, func() error { return perms.contains(`Subscription to "` + other + `"`) })
			natstest.Eventually(t, 10*time.Second, func() error { return perms.contains(`Publish to "` + other + `"`) })
			ajs, _ := jetstream.New(agent)
			actx, acancel := context.WithTimeout(ctx, time.Second)
			defer acancel()
			if _, err := ajs.AccountInfo(actx); err == nil {
				t.Error("an agent user can use the JetStream API")
			}
		})
	}
}

func connectErr(url, user, password string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.UserInfo(user, password), nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
	}
	return nc, err
}

// TestNATSLeafnodeAgent proves the leafnode listener: a remote site's
// nats-server, connected as an agent user, receives requests of that
// agent's upstream only.
func TestNATSLeafnodeAgent(t *testing.T) {
	hub, secrets := runNode(t)
	leafURL := &url.URL{Scheme: "nats-leaf", Host: fmt.Sprintf("127.0.0.1:%d", hub.Options().LeafNode.Port),
		User: url.UserPassword("agent-demo", secrets["SB_AGENT_DEMO_PASSWORD"])}
	site := natstest.RunServer(t, func(o *server.Options) {
		o.ServerName, o.JetStream = "site", false
		o.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{leafURL}}}
	})
	natstest.Eventually(t, 20*time.Second, func() error {
		if hub.NumLeafNodes() != 1 {
			return fmt.Errorf("%d leafnodes connected", hub.NumLeafNodes())
		}
		return nil
	})
	demo, _ := subjects.RelayRequest("demo")
	other, _ := subjects.RelayRequest("other")
	local := connect(t, site.ClientURL(), "", "")
	serveEcho(t, local, demo)
	serveEcho(t, local, other)
	gw := connect(t, hub.ClientURL(), "gateway", secrets["SB_GATEWAY_PASSWORD"])
	// Over a leafnode, replies travel in the upstream's own subject space
	// (as the relay's exchanges do), not through _INBOX.
	request := func(subj string, timeout time.Duration) (*nats.Msg, error) {
		reply := demo + ".test-reply." + nuid.Next()
		sub, err := gw.SubscribeSync(reply)
		if err != nil {
			return nil, err
		}
		defer sub.Unsubscribe()
		if err := gw.PublishRequest(subj, reply, []byte("x")); err != nil {
			return nil, err
		}
		return sub.NextMsg(timeout)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		resp, err := request(demo, 2*time.Second)
		if err != nil {
			return err
		}
		if string(resp.Data) != "ok:x" {
			return fmt.Errorf("reply %q", resp.Data)
		}
		return nil
	})
	if _, err := request(other, time.Second); err == nil {
		t.Fatal("a leafnode of agent-demo received a request for another upstream")
	}
}
