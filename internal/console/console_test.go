package console

import (
	"context"
	"encoding/json"
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
	"github.com/switchboard/switchboard/internal/subjects"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// serve mounts s's routes on a plain mux (echo's ":x" and "*" syntax is
// not needed: the console's routes are literal but for /ui/*).
func serve(t *testing.T, s *Service) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for _, r := range s.Routes() {
		p := strings.TrimSuffix(r.Path, "*")
		mux.Handle(r.Method+" "+p, r.Handler)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url, token string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// TestClusterDiscovery: two consoles on one NATS list both gateways; one
// that closes disappears from the other at once; hostile status messages
// change nothing.
func TestClusterDiscovery(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	cfg := Config{Enabled: true, Token: "tok", Interval: 100 * time.Millisecond}
	a := New(cfg, Deps{NC: connect(t, ns.URL()), Addr: func() string { return "a:1" }, Version: "v-a"})
	b := New(cfg, Deps{NC: connect(t, ns.URL()), Addr: func() string { return "b:2" }, Version: "v-b"})
	for _, s := range []*Service{a, b} {
		if err := s.Provision(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = a.Close() })
	srv := serve(t, a)
	list := func() ([]Status, error) {
		code, body := get(t, srv.URL+"/admin/api/cluster", "tok", nil)
		if code != 200 {
			return nil, fmt.Errorf("status %d: %s", code, body)
		}
		var ci clusterInfo
		if err := json.Unmarshal(body, &ci); err != nil {
			return nil, err
		}
		return ci.Gateways, nil
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		gws, err := list()
		if err != nil {
			return err
		}
		if len(gws) != 2 || gws[0].Listen != "a:1" || gws[1].Listen != "b:2" || gws[1].Version != "v-b" {
			return fmt.Errorf("gateways %+v", gws)
		}
		return nil
	})

	// Hostile messages: too big, bad id, not JSON, negative counts.
	raw := connect(t, ns.URL())
	for _, m := range []string{
		"not json", `{"id":""}`, `{"id":"` + strings.Repeat("x", 65) + `"}`, `{"id":"a\nb"}`,
		`{"id":"big","version":"` + strings.Repeat("v", 9000) + `"}`,
	} {
		if err := raw.Publish(subjects.ConsoleStatus(), []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Publish(subjects.ConsoleStatus(), []byte(`{"id":"evil","polls":-5,"listen":"`+strings.Repeat("L", 500)+`","totals":{"megaphone":{"req":-1},"x":{"req":1}}}`)); err != nil {
		t.Fatal(err)
	}
	_ = raw.Flush()
	natstest.Eventually(t, 5*time.Second, func() error {
		gws, err := list()
		if err != nil {
			return err
		}
		for _, g := range gws {
			if g.ID == "evil" {
				if g.Polls != 0 || len(g.Listen) != maxTextLen || len(g.Totals) != 0 {
					return fmt.Errorf("evil status not bounded: %+v", g)
				}
				return nil
			}
			if g.ID != a.ID() && g.ID != b.ID() {
				return fmt.Errorf("unexpected gateway %+v", g)
			}
		}
		return fmt.Errorf("evil status not listed yet")
	})

	// b stops: it is gone at once (leaving), the fake one after 3 intervals.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		gws, err := list()
		if err != nil {
			return err
		}
		if len(gws) != 1 || gws[0].ID != a.ID() {
			return fmt.Errorf("gateways %+v", gws)
		}
		return nil
	})
}

// TestAccess: the bearer check, and the loopback-only rule without token.
func TestAccess(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	nc := connect(t, ns.URL())
	withToken := serve(t, New(Config{Token: "s3cret"}, Deps{NC: nc}))
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {"wrong", 401}, {"s3cret2", 401}, {"S3CRET", 401}, {"s3cret", 200}} {
		if code, body := get(t, withToken.URL+"/admin/api/cluster", tc.token, nil); code != tc.want {
			t.Errorf("token %q: %d %s, want %d", tc.token, code, body, tc.want)
		}
		_, body := get(t, withToken.URL+"/admin/api/auth", tc.token, nil)
		var a authInfo
		if err := json.Unmarshal(body, &a); err != nil || a.Authorized != (tc.want == 200) || !a.TokenRequired || (a.Self != "") != a.Authorized {
			t.Errorf("auth with token %q: %s", tc.token, body)
		}
	}
	if code, body := get(t, withToken.URL+"/ui/", "", nil); code != 200 || !strings.Contains(string(body), "Switchboard") {
		t.Errorf("page with token configured: %d", code)
	}
	if _, body := get(t, withToken.URL+"/admin/api/auth", "s3cret", nil); strings.Contains(string(body), "s3cret") {
		t.Errorf("the token is shown: %s", body)
	}

	open := serve(t, New(Config{}, Deps{NC: nc}))
	if code, _ := get(t, open.URL+"/admin/api/cluster", "", nil); code != 200 {
		t.Errorf("loopback without token: %d", code)
	}
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"} {
		if code, _ := get(t, open.URL+"/admin/api/cluster", "", map[string]string{h: "203.0.113.9"}); code != 403 {
			t.Errorf("forwarded (%s) without token: %d, want 403", h, code)
		}
		if code, _ := get(t, open.URL+"/ui/", "", map[string]string{h: "203.0.113.9"}); code != 403 {
			t.Errorf("page forwarded (%s) without token: %d, want 403", h, code)
		}
		if _, body := get(t, open.URL+"/admin/api/auth", "", map[string]string{h: "203.0.113.9"}); !strings.Contains(string(body), `"off":true`) {
			t.Errorf("auth forwarded (%s) without token: %s", h, body)
		}
	}
}

func TestFromThisHost(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:5": true, "[::1]:5": true, "127.9.9.9:1": true, "[::ffff:127.0.0.1]:1": true,
		"10.0.0.1:5": false, "[2001:db8::1]:5": false, "garbage": false, "": false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = addr
		if got := fromThisHost(r); got != want {
			t.Errorf("fromThisHost(%q) = %v", addr, got)
		}
	}
}

func TestProtocolOf(t *testing.T) {
	for route, want := range map[string]string{
		"/create": "megaphone", "/write/:address/:stream": "megaphone", "/read/:address": "megaphone",
		"/channels/:ns/:name": "pipe", "/channels/namespaces": "pipe", "/mm": "middleman",
		"/relay/:name/*": "relay", "/metrics": "", "/ui/*": "", "/admin/api/cluster": "",
	} {
		if got := protocolOf(route); got != want {
			t.Errorf("protocolOf(%q) = %q, want %q", route, got, want)
		}
	}
}

// TestTraffic: cluster rates come from the growth of each gateway's
// totals between two readings (a new gateway sets a baseline, a counter
// that went back counts 0, never negative) and the history keeps the last
// historyLen samples.
func TestTraffic(t *testing.T) {
	var r rater
	t0 := time.Unix(100, 0)
	gw := func(id string, pipe, pipeErr, relay float64) Status {
		return Status{ID: id, Totals: map[string]Rate{"pipe": {pipe, pipeErr}, "relay": {relay, 0}}}
	}
	if got := r.rates([]Status{gw("a", 10, 1, 50)}, t0); got["pipe"] != (Rate{}) {
		t.Errorf("first reading: %+v", got)
	}
	got := r.rates([]Status{gw("a", 30, 5, 10), gw("b", 1000, 0, 0)}, t0.Add(2*time.Second))
	want := map[string]Rate{"pipe": {10, 2}, "relay": {0, 0}, "megaphone": {0, 0}, "middleman": {0, 0}}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("rate %s = %+v, want %+v", p, got[p], w)
		}
	}
	got = r.rates([]Status{gw("a", 30, 5, 10), gw("b", 1004, 0, 2)}, t0.Add(4*time.Second))
	if got["pipe"] != (Rate{2, 0}) || got["relay"] != (Rate{1, 0}) {
		t.Errorf("third reading: %+v", got)
	}
	var h history
	for i := range historyLen + 10 {
		h.add(int64(i), map[string]Rate{"pipe": {Req: float64(i)}})
	}
	s := h.snapshot()
	if len(s.At) != historyLen || s.At[0] != 10 || s.Series["pipe"].Req[historyLen-1] != historyLen+9 || len(s.Series["relay"].Req) != historyLen {
		t.Errorf("history: %d samples from %d", len(s.At), s.At[0])
	}
}
