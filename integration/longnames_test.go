package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/middleman"
)

// longNames are names over the bound: plain, escaped in the URL, and
// percent-encoded dots (each %2E decodes to one byte, as in the original
// 1,400 × %2E attack).
func longNames() map[string]string {
	return map[string]string{
		"1KB":         strings.Repeat("a", 1<<10),
		"5KB":         strings.Repeat("a", 5<<10),
		"70KB":        strings.Repeat("a", 70<<10),
		"1400x%2E":    strings.Repeat("%2E", 1400),
		"3900a":       strings.Repeat("a", 3900),
		"1KB-escaped": strings.Repeat("%C3%A9", 512),
	}
}

// TestLongNamesEverywhere throws names and keys over the bound at every
// route and every middleman command, trusted and untrusted, on one
// gateway (embedded mode). Each gets a clear refusal (400, 431 for a URL
// net/http itself refuses, PUB ERROR) and afterwards the same gateway
// still serves a Megaphone round trip, a pipe hand-off, a middleman
// PUB/SUB and a relayed request: no input closed its NATS connection.
func TestLongNamesEverywhere(t *testing.T) {
	up := echoUpstream(t)
	gw := harness.StartEmbedded(t, func(c *gateway.Config) {
		relayConfig(c)
		c.Middleman.ServiceKeys = []string{"svc"}
		c.Middleman.ClientKeys = []string{"cli"}
		c.Megaphone.AdminToken = "admin"
		c.Log.Level = "warn"
	})
	startAgent(t, agentConfig(t, gw.EmbeddedURL(), map[string]string{"demo": up.URL}))
	client := &http.Client{Timeout: 20 * time.Second}
	ch := createChannel(t, gw.URL())

	for label, n := range longNames() {
		routes := []struct{ method, path, body string }{
			{"GET", "/relay/" + n + "/x", ""},
			{"POST", "/relay/" + n + "/x", "b"},
			{"POST", "/channels/" + n + "/x", "b"},
			{"GET", "/channels/ns/" + n, ""},
			{"GET", "/channels/" + n, ""},
			{"DELETE", "/channels/" + n + "/x", ""},
			{"DELETE", "/channels/" + n, ""},
			{"POST", "/write/main." + n + "/s", `"x"`},
			{"POST", "/write/" + ch.Producer + "/" + n, `"x"`},
			{"GET", "/read/main." + n + ".1", ""},
			{"DELETE", "/admin/channels/main." + n + ".1", ""},
			{"POST", "/channelsExists", `{"channels":["main.` + n + `.1"]}`},
			{"POST", "/write-batch", `{"channels":["main.` + n + `.1"],"messages":[{"streamId":"s","body":1}]}`},
		}
		for _, r := range routes {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			req, _ := http.NewRequestWithContext(ctx, r.method, gw.URL()+r.path, strings.NewReader(r.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer admin")
			resp, err := client.Do(req)
			cancel()
			if err != nil {
				t.Errorf("%s %s %.40s: %v", label, r.method, r.path, err)
				continue
			}
			resp.Body.Close()
			okStatus := resp.StatusCode == 400 || resp.StatusCode == 431 || resp.StatusCode == 414
			if !okStatus {
				t.Errorf("%s %s %.40s…: %d, want 400 (or 431 from net/http)", label, r.method, r.path, resp.StatusCode)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svc, err := dialMM(ctx, gw.URL(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	cli, err := dialMM(ctx, gw.URL(), "cli")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.close()
	for _, size := range []int{1 << 10, 5 << 10, 70 << 10} {
		key := strings.Repeat("x", size)
		for _, c := range []*mmClient{svc, cli} {
			for _, cmd := range []string{"PUB", "SUB", "UNS", "REQ", "RES", "EPUB", "ESUB", "EREQ"} {
				if err := c.send(cmd, key, "b", "Rid", "g-1-2-x"); err != nil {
					t.Fatalf("send %s: %v", cmd, err)
				}
				f := waitFrame(t, c, "PUB")
				if f.Key != "ERROR" || !strings.Contains(string(f.Body), cmd) || len(f.Body) > 200 {
					t.Errorf("%s %d bytes: got %s %s %.100q, want a short PUB ERROR naming %s", cmd, size, f.Cmd, f.Key, f.Body, cmd)
				}
			}
		}
	}

	// The gateway still serves every protocol.
	harness.WaitReady(t, gw.URL())
	harness.Smoke(t, gw.URL())
	if r := do(t, "GET", gw.URL()+"/relay/demo/ok", nil, nil); r.status != 200 {
		t.Fatalf("relay after long names: %d %q", r.status, r.body)
	}
	if err := svc.send("SUB", "alive", ""); err != nil {
		t.Fatal(err)
	}
	if err := svc.send("EPUB", "alive", ""); err != nil {
		t.Fatal(err)
	}
	natstestEventuallyPub(t, cli, svc, "alive")
}

// waitFrame returns c's next frame with command cmd.
func waitFrame(t *testing.T, c *mmClient, cmd string) *middleman.Frame {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f := <-c.frames:
			if f.Cmd == cmd {
				return f
			}
		case <-timeout:
			t.Fatalf("no %s frame within 10s", cmd)
		}
	}
}

// natstestEventuallyPub publishes from pub on key until sub receives it
// (a SUB takes effect once its interest reached the server).
func natstestEventuallyPub(t *testing.T, pub, sub *mmClient, key string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		body := fmt.Sprintf("ping %d", i)
		if err := pub.send("PUB", key, body); err != nil {
			t.Fatal(err)
		}
		wait := time.After(200 * time.Millisecond)
	drain:
		for {
			select {
			case f := <-sub.frames:
				if f.Cmd == "PUB" && f.Key == key {
					return
				}
			case <-wait:
				break drain
			}
		}
	}
	t.Fatalf("PUB %s never reached the subscriber", key)
}
