package integration

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

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

func consoleGet(base, path, token string, out any) error {
	req, _ := http.NewRequest(http.MethodGet, base+"/admin/api/"+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, raw)
	}
	if s, ok := out.(*string); ok {
		*s = string(raw)
		return nil
	}
	return json.Unmarshal(raw, out)
}

// TestConsoleAPI: on real gateways, a stopped gateway leaves every
// console's list within seconds, the relay view counts an agent's request
// in flight, and no answer carries a secret.
func TestConsoleAPI(t *testing.T) {
	ns := natstest.RunServer(t, nil)
	const token = "ui-secret-token"
	secrets := []string{token, "mm-secret-key", "relay-secret-key", "mp-admin-secret"}
	gws := harness.StartN(t, 2, ns.URL(), func(c *gateway.Config) {
		c.UI.Token = token
		c.UI.Interval = 200 * time.Millisecond
		c.Middleman.ServiceKeys = []string{"mm-secret-key"}
		c.Relay.APIKeys = map[string]string{"slow": "relay-secret-key"}
		c.Megaphone.AdminToken = "mp-admin-secret"
		c.Log.Level = "info"
	})
	a, b := gws[0], gws[1]
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(target.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	startAgent(t, agentConfig(t, ns.URL(), map[string]string{"slow": target.URL}))

	type cluster struct {
		Gateways []struct{ Listen string } `json:"gateways"`
	}
	listens := func() (string, error) {
		var c cluster
		if err := consoleGet(a.URL(), "cluster", token, &c); err != nil {
			return "", err
		}
		var out []string
		for _, g := range c.Gateways {
			out = append(out, g.Listen)
		}
		return strings.Join(out, " "), nil
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		got, err := listens()
		if err != nil || !strings.Contains(got, a.Addr()) || !strings.Contains(got, b.Addr()) {
			return fmt.Errorf("cluster %q, %v", got, err)
		}
		return nil
	})

	// A request in flight through the relay shows on its agent.
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, b.URL()+"/relay/slow/x", nil)
		req.Header.Set("Authorization", "Bearer relay-secret-key")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("relayed request never reached the target")
	}
	type relayView struct {
		Upstreams []struct {
			Name   string
			Agents []struct{ InFlight, Requests int }
		}
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		var r relayView
		if err := consoleGet(a.URL(), "relay", token, &r); err != nil {
			return err
		}
		if len(r.Upstreams) != 1 || r.Upstreams[0].Name != "slow" || len(r.Upstreams[0].Agents) != 1 || r.Upstreams[0].Agents[0].InFlight != 1 {
			return fmt.Errorf("relay view %+v", r)
		}
		return nil
	})
	natstest.Eventually(t, 5*time.Second, func() error {
		var c struct {
			Gateways []struct {
				Listen  string
				Relayed int `json:"relayInFlight"`
			}
		}
		if err := consoleGet(a.URL(), "cluster", token, &c); err != nil {
			return err
		}
		for _, g := range c.Gateways {
			if g.Listen == b.Addr() && g.Relayed == 1 {
				return nil
			}
		}
		return fmt.Errorf("B's relayed request not counted: %+v", c)
	})

	// No answer carries a secret.
	for _, path := range []string{"auth", "cluster", "traffic", "nats", "relay", "channels"} {
		var raw string
		if err := consoleGet(a.URL(), path, token, &raw); err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if strings.Contains(raw, s) {
				t.Errorf("/admin/api/%s shows a secret: %s", path, raw)
			}
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// B stops: A's console drops it within seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	natstest.Eventually(t, 5*time.Second, func() error {
		got, err := listens()
		if err != nil || got != a.Addr() {
			return fmt.Errorf("cluster %q, %v", got, err)
		}
		return nil
	})
	t.Logf("stopped gateway gone from the console after %s", time.Since(stopped).Round(time.Millisecond))
}
