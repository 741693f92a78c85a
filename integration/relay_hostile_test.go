package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Relay wire names, as an agent of another implementation would use them.
const (
	wOp   = "Sb-Relay-Op"
	wTry  = "Sb-Relay-Try"
	wCtl  = "Sb-Relay-Ctl"
	wBody = "Sb-Relay-Body"
)

// hostileSubjects are what a malicious agent hands over in place of its
// own subjects: JetStream and KV API subjects the gateway may use, other
// upstreams' space, wildcards, over-long and malformed values.
func hostileSubjects() []string {
	in, _ := subjects.RelayInbox("evil")
	good, _ := subjects.RelayInbox("good")
	return []string{
		"$JS.API.STREAM.DELETE." + subjects.MegaphoneStream,
		"$JS.API.STREAM.PURGE." + subjects.PipeStream,
		"$KV." + subjects.MiddlemanTrustBucket + ".ESUB.victim",
		"$KV." + subjects.MegaphoneChannelsBucket + ".x",
		good + ".x",
		"sb.>",
		in + ".>",
		in + ".*",
		in + "x.y",
		in + "..x",
		in + "." + strings.Repeat("x", 5000),
		"",
		"two words",
	}
}

// literalHostile are the hostile values a spy can subscribe to: nobody but
// the gateway could publish there (the agent's permissions forbid it).
func literalHostile() []string {
	var out []string
	for _, s := range hostileSubjects() {
		if s != "" && !strings.ContainsAny(s, " *>") && len(s) < 1000 && !strings.Contains(s, "..") && !strings.HasPrefix(s, "sb.relay.evil") {
			out = append(out, s)
		}
	}
	return out
}

// evilAgent serves upstream "evil" with an agent user's credentials and
// answers every request with hostile values in some field it controls.
type evilAgent struct {
	t       *testing.T
	nc      *nats.Conn
	prefix  string
	n       atomic.Int64
	pending sync.Map // control subject → pendingResp
}

// scenarios an evil agent plays, by request number.
const (
	evilAckCtl  = iota // ack whose control subject is hostile
	evilAckBody        // ack of a streamed body whose receiver is hostile
	evilRespCtl        // inline response that stands in for the ack, hostile control
	evilHello          // streamed response; the stream hello names hostile subjects
	evilNoHello        // streamed response "started" without any hello
	evilBadHead        // malformed response heads
	evilScenarios
)

func startEvilAgent(t *testing.T, url string) *evilAgent {
	in, _ := subjects.RelayInbox("evil")
	open, _ := subjects.RelayRequest("evil")
	nc, err := nats.Connect(url, nats.UserInfo("evil", "evil"), nats.CustomInboxPrefix(in))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	a := &evilAgent{t: t, nc: nc, prefix: in}
	if _, err := nc.QueueSubscribe(open, "sb-relay", a.serve); err != nil {
		t.Fatal(err)
	}
	// Its control subscription: the gateway's "pull" arrives here.
	if _, err := nc.Subscribe(in+".evilctl.*", a.control); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *evilAgent) msg(subject, op, try string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(wOp, op)
	m.Header.Set(wTry, try)
	return m
}

func (a *evilAgent) pub(m *nats.Msg) { _ = a.nc.PublishMsg(m) }

func (a *evilAgent) serve(open *nats.Msg) {
	i := int(a.n.Add(1))
	// The caller names the scenario and the hostile value in the path:
	// /<scenario>/<hostile index>.
	var scenario, h int
	lines := strings.SplitN(string(open.Data), "\n", 3)
	if len(lines) < 2 {
		return
	}
	if _, err := fmt.Sscanf(lines[1], "/%d/%d", &scenario, &h); err != nil {
		return
	}
	hostile := hostileSubjects()
	bad := hostile[h%len(hostile)]
	try := open.Header.Get(wTry)
	ctl := fmt.Sprintf("%s.evilctl.%d", a.prefix, i)
	switch scenario {
	case evilAckCtl:
		m := a.msg(open.Reply, "ack", try)
		m.Header.Set(wCtl, bad)
		m.Header.Set(wBody, bad)
		a.pub(m)
	case evilAckBody:
		m := a.msg(open.Reply, "ack", try)
		m.Header.Set(wCtl, ctl)
		m.Header.Set(wBody, bad)
		a.pub(m)
	case evilRespCtl:
		m := a.msg(open.Reply, "resp", try)
		m.Header.Set(wCtl, bad)
		m.Data = []byte("200\n2\n\nok")
		a.pub(m)
	case evilHello, evilNoHello:
		ack := a.msg(open.Reply, "ack", try)
		ack.Header.Set(wCtl, ctl)
		a.pub(ack)
		m := a.msg(open.Reply, "resp", try)
		m.Header.Set(wCtl, ctl)
		m.Header.Set(wBody, "stream")
		m.Data = []byte("200\n-1\n\n")
		a.pub(m)
		a.pending.Store(ctl, pendingResp{reply: open.Reply, ctl: ctl, bad: bad, hello: scenario == evilHello})
	case evilBadHead:
		m := a.msg(open.Reply, "resp", try)
		m.Header.Set(wCtl, ctl)
		heads := []string{"", "garbage", "99\n0\n\n", "1000\n0\n\n", "200\n5\n\nlonger than five", "200\nx\n\n", "200\n0\nno-colon\n\n"}
		m.Data = []byte(heads[h%len(heads)])
		a.pub(m)
	}
}

// pendingResp is a streamed response waiting for the gateway's pull.
type pendingResp struct {
	reply, ctl, bad string
	hello           bool
}

// control plays the stream part: on "pull" it says hello to the gateway's
// receiver with hostile subjects (or not at all), then "started".
func (a *evilAgent) control(m *nats.Msg) {
	v, ok := a.pending.LoadAndDelete(m.Subject)
	if !ok || m.Header.Get(wOp) != "pull" {
		return
	}
	p := v.(pendingResp)
	if p.hello {
		hello := nats.NewMsg(m.Header.Get(wBody))
		hello.Header.Set("Sb-Hello", "1")
		hello.Header.Set("Sb-Ctl", p.bad)
		// The reply is hostile too where the client library can send it.
		hello.Reply = a.prefix + ".evilreply"
		if p.bad != "" && len(p.bad) < 1000 && !strings.Contains(p.bad, " ") {
			hello.Reply = p.bad
		}
		a.pub(hello)
	}
	started := nats.NewMsg(p.reply)
	started.Header.Set(wOp, "started")
	started.Header.Set(wCtl, p.ctl)
	a.pub(started)
}

// TestRelayMaliciousAgent runs a few hundred requests against an agent
// that answers with hostile values in every field it controls. Each
// request gets a clean 502; the gateway publishes nothing where the agent
// pointed it; every stream and bucket is intact, the trust bucket
// unchanged, an earlier Megaphone event still readable, and the gateway
// still relays to an honest agent.
func TestRelayMaliciousAgent(t *testing.T) {
	evilPerms := subjects.AgentPermissions([]string{"evil"})
	goodPerms := subjects.AgentPermissions([]string{"good"})
	perm := func(p *subjects.Permissions) *server.Permissions {
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: p.Publish},
			Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
			Response:  &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute},
		}
	}
	srv := startNATSWithUsers(t, []*server.User{
		{Username: "gw", Password: "gw"},
		{Username: "admin", Password: "admin"},
		{Username: "evil", Password: "evil", Permissions: perm(evilPerms)},
		{Username: "good", Password: "good", Permissions: perm(goodPerms)},
	})
	gw := harness.StartN(t, 1, srv.URL(), func(c *gateway.Config) {
		relayConfig(c)
		c.NATS.User, c.NATS.Password = "gw", "gw"
		c.Relay.AckTimeout = 500 * time.Millisecond
		// Long enough for the evil agent to be seen on a loaded machine:
		// the scenarios are about what it answers, not about its absence
		// (a 1 s wait gave 503 NO_AGENT at load 15).
		c.Relay.AgentWait = 10 * time.Second
		c.Relay.ResponseTimeout = 3 * time.Second
		c.Log.Level = "warn"
	})[0]

	admin, err := nats.Connect(srv.URL(), nats.UserInfo("admin", "admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	js, _ := jetstream.New(admin)

	// State to keep: a buffered Megaphone event and a trust enablement.
	ch := createChannel(t, gw.URL())
	if st, body := post(t, gw.URL()+"/write/"+ch.Producer+"/s1", `{"keep":"me"}`); st != 201 {
		t.Fatalf("write: %d %s", st, body)
	}
	trust, err := js.KeyValue(context.Background(), subjects.MiddlemanTrustBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trust.Put(context.Background(), "EPUB.known", []byte("1")); err != nil {
		t.Fatal(err)
	}
	before := jsSnapshot(t, js)

	var spied atomic.Int64
	var spiedOn sync.Map
	for _, s := range literalHostile() {
		sub, err := admin.Subscribe(s, func(m *nats.Msg) { spied.Add(1); spiedOn.Store(m.Subject, true) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	admin.Flush()

	evil := startEvilAgent(t, srv.URL())
	// Every scenario with every hostile value, twice with and twice without a request
	// body streamed to the agent.
	requests := evilScenarios * len(hostileSubjects()) * 4
	big := strings.Repeat("b", 100<<10)
	var wg sync.WaitGroup
	statuses := make([]string, requests)
	sem := make(chan struct{}, 8)
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range requests {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			scenario, h, streamed := i%evilScenarios, (i/evilScenarios)%len(hostileSubjects()), i%2 == 1
			var body io.Reader
			if streamed || scenario == evilAckBody {
				body = strings.NewReader(big) // streamed request body
			}
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/relay/evil/%d/%d", gw.URL(), scenario, h), body)
			resp, err := client.Do(req)
			if err != nil {
				statuses[i] = "error " + err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			statuses[i] = strconv.Itoa(resp.StatusCode) + " " + string(b)
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if !strings.HasPrefix(s, "502 ") || strings.Contains(s, "\n") && !strings.HasSuffix(s, "}\n") {
			t.Errorf("request %d (scenario %d): %.300q, want a clean 502", i, i%evilScenarios, s)
		}
	}
	if n := evil.n.Load(); n < int64(requests) {
		t.Errorf("the evil agent saw %d open requests, want ≥ %d", n, requests)
	}

	// Nothing reached the hostile subjects.
	admin.Flush()
	if n := spied.Load(); n > 0 {
		var on []string
		spiedOn.Range(func(k, _ any) bool { on = append(on, k.(string)); return true })
		t.Errorf("gateway published %d messages to hostile subjects %v", n, on)
	}
	// Every stream and bucket intact, nothing purged, trust unchanged.
	after := jsSnapshot(t, js)
	for name, msgs := range before {
		if got, ok := after[name]; !ok || got < msgs {
			t.Errorf("stream %s: %d messages before, %d (present %v) after", name, msgs, got, ok)
		}
	}
	keys, err := trust.Keys(context.Background())
	if err != nil || !slices.Equal(keys, []string{"EPUB.known"}) {
		t.Errorf("trust bucket keys after: %v, %v", keys, err)
	}
	if ev := readOne(t, gw.URL(), ch.Consumer); !strings.Contains(ev, `"keep":"me"`) {
		t.Errorf("buffered event after the attack: %q", ev)
	}
	// The gateway's connection is up and it relays to an honest agent.
	harness.WaitReady(t, gw.URL())
	up := echoUpstream(t)
	cfg := agentConfig(t, srv.URL(), map[string]string{"good": up.URL})
	cfg.NATS.User, cfg.NATS.Password = "good", "good"
	startAgent(t, cfg)
	if r := do(t, "GET", gw.URL()+"/relay/good/ok", nil, nil); r.status != 200 {
		t.Fatalf("honest relay after the attack: %d %q", r.status, r.body)
	}
	if m := metricValue(t, gw.URL(), "switchboard_relay_agent_violations_total"); m < float64(requests)/2 {
		t.Errorf("agent violations counted: %v", m)
	}
}

// startNATSWithUsers runs a JetStream server that requires one of users.
func startNATSWithUsers(t *testing.T, users []*server.User) *natstest.Server {
	return natstest.RunServer(t, func(o *server.Options) { o.Users = users })
}

// jsSnapshot maps every stream to its message count.
func jsSnapshot(t *testing.T, js jetstream.JetStream) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	names := js.StreamNames(context.Background())
	for n := range names.Name() {
		s, err := js.Stream(context.Background(), n)
		if err != nil {
			t.Fatalf("stream %s: %v", n, err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatalf("stream %s info: %v", n, err)
		}
		out[n] = info.State.Msgs
	}
	if len(out) == 0 {
		t.Fatal("no streams")
	}
	return out
}

type channel struct{ Producer, Consumer string }

func createChannel(t *testing.T, base string) channel {
	t.Helper()
	st, body := post(t, base+"/create", "")
	var c struct{ ProducerAddress, ConsumerAddress string }
	if st != 200 || json.Unmarshal([]byte(body), &c) != nil {
		t.Fatalf("create: %d %s", st, body)
	}
	return channel{c.ProducerAddress, c.ConsumerAddress}
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readOne reads the first event of a Megaphone poll.
func readOne(t *testing.T, base, consumer string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/read/"+consumer, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	return line
}

// metricValue sums the samples of metric name on base's /metrics.
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	_, body := get(t, base+"/metrics")
	sum := 0.0
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// TestRelayPathConfined: dot segments, plain or percent-encoded, are
// resolved before the path is joined to the target's base path; a path
// that climbs above it is 400 and reaches no agent; %2F stays escaped.
func TestRelayPathConfined(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, relayConfig)
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"demo": up.URL + "/base"}))
	for _, c := range []struct{ path, want string }{
		{"/x", "/base/x"},
		{"/a/../b", "/base/b"},
		{"/a/%2E%2E/b", "/base/b"},
		{"/a/./b/", "/base/a/b/"},
		{"/a%2Fb", "/base/a%2Fb"},
		{"/a/b/..", "/base/a/"},
	} {
		r := do(t, "GET", gw.URL()+"/relay/demo"+c.path, nil, nil)
		if r.status != 200 || decodeEcho(t, r).Path != c.want {
			t.Errorf("%s: %d %q, want 200 with upstream path %s", c.path, r.status, r.body, c.want)
		}
	}
	for _, p := range []string{"/..", "/../other/x", "/%2E%2E/other/x", "/%2e%2E", "/a/../../x", "/a/%2E%2E/.%2E/x"} {
		r := do(t, "GET", gw.URL()+"/relay/demo"+p, nil, nil)
		if r.status != 400 || !strings.Contains(r.body, "BAD_REQUEST") || !strings.Contains(r.body, "climbs above") {
			t.Errorf("%s: %d %q, want 400 BAD_REQUEST", p, r.status, r.body)
		}
	}
}
