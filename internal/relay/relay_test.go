package relay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/relay"
	"github.com/switchboard/switchboard/internal/subjects"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	url    string
	client *relay.Client
	caller *nats.Conn
}

// setup starts a NATS server, an agent-side Server for upstream "u" on
// target, and a Client with ccfg on its own connection.
func setup(t *testing.T, target string, scfg relay.ServerConfig, ccfg relay.Config) *env {
	t.Helper()
	srv := natstest.RunServer(t, nil)
	prefix, _ := subjects.RelayInbox("u")
	anc, err := nats.Connect(srv.URL(), nats.CustomInboxPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	cnc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	scfg.Upstream, scfg.Target = "u", target
	s, err := relay.NewServer(anc, scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		anc.Close()
		cnc.Close()
	})
	return &env{url: srv.URL(), client: relay.NewClient(cnc, ccfg, nil, nil), caller: cnc}
}

func get(t *testing.T, e *env, path string) (*relay.Response, error) {
	t.Helper()
	return e.client.Do(context.Background(), "u", &relay.Request{Method: "GET", Path: path, Header: http.Header{}})
}

// TestMalformedOpenRequests sends garbage to an agent's endpoint: each gets
// an error reply, and the agent keeps serving.
func TestMalformedOpenRequests(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine") }))
	defer up.Close()
	e := setup(t, up.URL, relay.ServerConfig{}, relay.Config{})
	open, _ := subjects.RelayRequest("u")
	bad := []*nats.Msg{
		{Subject: open, Data: []byte("not a head")},
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"open"}}, Data: []byte("GET\n/x\n\n")},
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"open"}}, Data: []byte("GET\n/x\n\nten\n\n")},
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"open"}}, Data: []byte("GET\n/x\n\n-5\n\n")},
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"open"}}, Data: []byte("GET\n/x\n\n0\nno colon\n\n")},
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"open"}}, Data: []byte("GET\n/x\n\n0\nX: 1\n")},
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"open"}}, Data: []byte("GET\nx\n\n0\n\n")},
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"open"}}, Data: []byte("\n/x\n\n0\n\n")},
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"nope"}}, Data: []byte("GET\n/x\n\n0\n\n")},
		// A whole body that is not what its length says.
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"open"}}, Data: []byte("POST\n/x\n\n10\n\nabc")},
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"open"}}, Data: []byte("POST\n/x\n\n0\n\nabc")},
		{Subject: open, Header: nats.Header{"Sb-Relay-Op": {"open"}}, Data: []byte("POST\n/x\n\n-1\n\nabc")},
	}
	for i, m := range bad {
		resp, err := e.caller.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatalf("bad request %d: %v", i, err)
		}
		if resp.Header.Get("Sb-Relay-Op") != "err" || resp.Header.Get("Sb-Relay-Code") != "BAD_REQUEST" {
			t.Fatalf("bad request %d answered %v %q", i, resp.Header, resp.Data)
		}
	}
	// An invalid escape in the path is refused by the agent, not sent on.
	if _, err := get(t, e, "/%zz"); !errors.Is(err, relay.ErrBadRequest) {
		t.Fatalf("bad escape: %v", err)
	}
	resp, err := get(t, e, "/ok")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "fine" {
		t.Fatalf("after bad input: %q", b)
	}
}

func TestBadClientRequests(t *testing.T) {
	e := setup(t, "http://127.0.0.1:1", relay.ServerConfig{}, relay.Config{})
	for _, r := range []*relay.Request{{Method: "", Path: "/"}, {Method: "GET", Path: "x"}} {
		if _, err := e.client.Do(context.Background(), "u", r); !errors.Is(err, relay.ErrBadRequest) {
			t.Fatalf("%+v: %v", r, err)
		}
	}
	if _, err := e.client.Do(context.Background(), "", &relay.Request{Method: "GET", Path: "/"}); !errors.Is(err, relay.ErrBadRequest) {
		t.Fatalf("empty upstream: %v", err)
	}
}

// TestBusyAgent proves an agent at its concurrency limit turns requests
// away (the caller gets 503 NO_AGENT once the agent wait is over) and
// serves again when a slot frees.
func TestBusyAgent(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	e := setup(t, up.URL, relay.ServerConfig{MaxConcurrent: 1}, relay.Config{AgentWait: 300 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		resp, err := get(t, e, "/slow")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-arrived
	_, err := get(t, e, "/fast")
	if !errors.Is(err, relay.ErrNoAgent) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("busy agent: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	resp, err := get(t, e, "/fast")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestAckTimeoutAsksAnother puts a black hole into the agents' queue
// group: requests it swallows are asked again after the ack timeout and
// served by the real agent.
func TestAckTimeoutAsksAnother(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	e := setup(t, up.URL, relay.ServerConfig{}, relay.Config{AckTimeout: 200 * time.Millisecond, AgentWait: 5 * time.Second})
	open, _ := subjects.RelayRequest("u")
	hole, err := e.caller.QueueSubscribe(open, "sb-relay", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Unsubscribe()
	e.caller.Flush()
	for i := 0; i < 10 || swallowed(hole) == 0; i++ {
		if i == 60 {
			t.Fatal("the queue group never picked the black hole")
		}
		resp, err := get(t, e, "/x")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
	}
}

func swallowed(s *nats.Subscription) int64 {
	n, _ := s.Delivered()
	return n
}

// TestUpstreamBreaksMidStream proves a response that breaks after its head
// reaches the client as a failed response, not as a short clean one.
func TestUpstreamBreaksMidStream(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}))
	defer up.Close()
	e := setup(t, up.URL, relay.ServerConfig{}, relay.Config{})
	resp, err := get(t, e, "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, relay.ErrUpstreamBroken) || string(b) != "partial" {
		t.Fatalf("read %q, %v", b, err)
	}
	// Through Forward, the client's connection is aborted.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.client.Forward(r.Context(), w, r, "u", r.URL.EscapedPath())
	}))
	defer front.Close()
	cresp, err := http.Get(front.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(cresp.Body)
	cresp.Body.Close()
	if err == nil {
		t.Fatalf("client read %q without error", b)
	}
}

func TestForwardSetsForwardedHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s|%s|%s|%q", r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Header.Values("User-Agent"))
	}))
	defer up.Close()
	e := setup(t, up.URL, relay.ServerConfig{}, relay.Config{})
	// The test client is a trusted proxy, so its X-Forwarded-* are kept
	// (header_test.go checks that an untrusted peer's are replaced).
	trusted, _ := relay.ParseTrustedProxies([]string{"127.0.0.1"})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(relay.WithTrustedProxies(r.Context(), trusted))
		e.client.Forward(r.Context(), w, r, "u", r.URL.EscapedPath())
	}))
	defer front.Close()
	req, _ := http.NewRequest("GET", front.URL+"/", nil)
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("User-Agent", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	host := strings.TrimPrefix(front.URL, "http://")
	if want := "10.0.0.1, 127.0.0.1|https|" + host + "|[]"; string(b) != want {
		t.Fatalf("got %q, want %q", b, want)
	}
}

func TestHTTPErrorTable(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("%w: x", relay.ErrNoAgent), 503, "NO_AGENT"},
		{fmt.Errorf("%w: x", relay.ErrTimeout), 504, "TIMEOUT"},
		{fmt.Errorf("%w: x", relay.ErrUpstreamUnreachable), 502, "UPSTREAM_UNREACHABLE"},
		{fmt.Errorf("%w: x", relay.ErrAgentLost), 502, "AGENT_LOST"},
		{fmt.Errorf("%w: x", relay.ErrUnauthorized), 401, "UNAUTHORIZED"},
		{fmt.Errorf("%w: x", relay.ErrBadRequest), 400, "BAD_REQUEST"},
		{context.Canceled, 503, "SERVICE_UNAVAILABLE"},
		{errors.New("other"), 502, "UPSTREAM_UNREACHABLE"},
	}
	for _, c := range cases {
		if he := relay.HTTPError(c.err); he.Status != c.status || he.Code != c.code {
			t.Errorf("%v → %d %s, want %d %s", c.err, he.Status, he.Code, c.status, c.code)
		}
	}
}

func TestNewServerRejectsBadTargets(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, target := range []string{"", "ftp://x", "http://", "::"} {
		if _, err := relay.NewServer(nc, relay.ServerConfig{Upstream: "u", Target: target}); err == nil {
			t.Errorf("target %q accepted", target)
		}
	}
	if _, err := relay.NewServer(nc, relay.ServerConfig{Upstream: "", Target: "http://x"}); err == nil {
		t.Error("empty upstream accepted")
	}
}

// TestTargetBasePath proves the relayed path is appended to the target's
// own path.
func TestTargetBasePath(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RequestURI) }))
	defer up.Close()
	e := setup(t, up.URL+"/base/", relay.ServerConfig{}, relay.Config{})
	resp, err := e.client.Do(context.Background(), "u", &relay.Request{Method: "GET", Path: "/a%2Fb", RawQuery: "x=1"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "/base/a%2Fb?x=1" {
		t.Fatalf("upstream saw %q", b)
	}
}

// TestReplySubjectReuse proves that reply subjects are reused, that an
// answer of an earlier exchange arriving on a reused subject is ignored,
// and that a subject sent as the key of a cancel broadcast is never
// reused.
func TestReplySubjectReuse(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	anc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	cnc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer cnc.Close()
	client := relay.NewClient(cnc, relay.Config{AckTimeout: 5 * time.Second}, nil, nil)
	defer client.Close()
	prefix, _ := subjects.RelayInbox("u")
	open, _ := subjects.RelayRequest("u")
	type opened struct{ reply, try string }
	opens := make(chan opened, 8)
	// A fake agent: the second request gets the first one's answer again
	// (a late answer of an earlier exchange) before its own; the third
	// is never answered.
	var first opened
	n := 0
	sub, err := anc.QueueSubscribe(open, "sb-relay", func(m *nats.Msg) {
		n++
		o := opened{m.Reply, m.Header.Get("Sb-Relay-Try")}
		opens <- o
		answer := func(try, body string) {
			r := nats.NewMsg(o.reply)
			r.Header.Set("Sb-Relay-Op", "resp")
			r.Header.Set("Sb-Relay-Try", try)
			r.Header.Set("Sb-Relay-Ctl", prefix+".fake."+try)
			r.Data = []byte(fmt.Sprintf("200\n%d\n\n%s", len(body), body))
			_ = anc.PublishMsg(r)
		}
		switch n {
		case 1:
			first = o
			answer(o.try, "first")
		case 2:
			answer(first.try, "stale")
			answer(o.try, "fresh")
		case 4:
			answer(o.try, "fourth")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	anc.Flush()
	do := func(ctx context.Context) (string, error) {
		resp, err := client.Do(ctx, "u", &relay.Request{Method: "GET", Path: "/", Header: http.Header{}})
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := do(context.Background()); err != nil || body != "first" {
		t.Fatalf("first: %q %v", body, err)
	}
	o1 := <-opens
	if body, err := do(context.Background()); err != nil || body != "fresh" {
		t.Fatalf("second: %q %v (a late answer of the first exchange was taken)", body, err)
	}
	o2 := <-opens
	if o2.reply != o1.reply || o2.try == o1.try {
		t.Fatalf("reply subject not reused, or attempt value repeated: %+v %+v", o1, o2)
	}
	// Given up before any agent accepted: the caller broadcasts a cancel
	// keyed by its reply subject, which must not serve another exchange.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := do(ctx); done <- err }()
	o3 := <-opens
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("third: %v", err)
	}
	if body, err := do(context.Background()); err != nil || body != "fourth" {
		t.Fatalf("fourth: %q %v", body, err)
	}
	if o4 := <-opens; o4.reply == o3.reply {
		t.Fatalf("the cancelled exchange's reply subject %q was reused", o3.reply)
	}
}
