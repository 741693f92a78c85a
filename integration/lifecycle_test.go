package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// authServer is a single JetStream server that requires user/password, so a
// test can revoke the gateway's user and make its connection close for good.
func authServer(t *testing.T) *natstest.Server {
	t.Helper()
	return natstest.RunServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "gw", Password: "secret"}}
	})
}

// revoke reloads s with a different user list: the server drops the
// gateway's client, and its reconnect fails with an authorization violation
// twice, after which nats.go closes the connection for good.
func revoke(t *testing.T, s *natstest.Server) {
	t.Helper()
	opts := s.Options()
	opts.Users = []*server.User{{Username: "someone-else", Password: "other"}}
	if err := s.ReloadOptions(&opts); err != nil {
		t.Fatalf("reload without the gateway's user: %v", err)
	}
}

// getError returns the status and the JSON error code of GET url.
func getError(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body.Code, nil
}

// TestGatewayProcessExitsWhenNATSClosed proves, with the real binary, that a
// gateway whose NATS connection closes for good exits non-zero within a few
// seconds, so its supervisor restarts it.
func TestGatewayProcessExitsWhenNATSClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the gateway binary")
	}
	s := authServer(t)
	p := harness.StartProcess(t, "--nats-url", s.URL(), "--nats-user", "gw", "--nats-password", "secret")
	revoked := time.Now()
	revoke(t, s)
	select {
	case <-p.Exited():
		t.Logf("gateway exited %s after its credentials were revoked: %v", time.Since(revoked), p.ExitErr())
	case <-time.After(10 * time.Second):
		t.Fatal("gateway still running 10s after its NATS connection closed for good")
	}
	var exit *exec.ExitError
	if !errors.As(p.ExitErr(), &exit) || exit.ExitCode() == 0 {
		t.Fatalf("exit: %v, want a non-zero exit code", p.ExitErr())
	}
}

// TestFreshClusterStartup starts three gateways at the same moment as a
// 3-node cluster that was started a moment ago (no meta leader yet): each
// answers /healthz at once and all become ready, five rounds in a row.
func TestFreshClusterStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five 3-node clusters")
	}
	var took []time.Duration
	for round := 1; round <= 5; round++ {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			took = append(took, freshClusterRound(t)...)
		})
	}
	slices.Sort(took)
	if len(took) > 0 {
		t.Logf("time to ready over %d gateways: min %s median %s max %s",
			len(took), took[0], took[len(took)/2], took[len(took)-1])
	}
}

func freshClusterRound(t *testing.T) []time.Duration {
	c := natstest.StartCluster(t, 3)
	type started struct {
		g    *gateway.Gateway
		took time.Duration
		err  error
	}
	gws := make([]started, 3)
	cfgs := make([]*gateway.Config, 3)
	for i := range cfgs {
		cfgs[i] = harness.Config(t)
		cfgs[i].NATS.URL = c.URLs()
		cfgs[i].JetStream.Replicas = 3
		cfgs[i].Log.Level = "info"
	}
	// When the meta leader is elected bounds how soon anyone can be
	// ready: log it next to the gateways' times.
	began := time.Now()
	leader := make(chan time.Duration, 1)
	go func() {
		_ = pollUntil(began.Add(60*time.Second), func() error {
			for _, s := range c.Servers {
				if s.JetStreamIsLeader() {
					leader <- time.Since(began)
					return nil
				}
			}
			return errors.New("no meta leader")
		})
		close(leader)
	}()
	var wg sync.WaitGroup
	for i := range gws {
		logger := harness.LoggerAt(t, "info").With("gateway", i)
		wg.Go(func() {
			at := time.Now()
			g, err := gateway.Start(context.Background(), cfgs[i], logger)
			if err != nil {
				gws[i].err = err
				return
			}
			gws[i].g = g
			if err := pollUntil(at.Add(time.Second), func() error { return expectStatus(g.URL()+"/healthz", http.StatusOK) }); err != nil {
				gws[i].err = fmt.Errorf("/healthz within 1s of Start: %w", err)
				return
			}
			if d := time.Since(at); d > time.Second {
				gws[i].err = fmt.Errorf("/healthz answered 200 only %s after Start was called, want within 1s", d)
				return
			}
			gws[i].err = pollUntil(at.Add(30*time.Second), func() error { return harness.IsReady(g.URL()) })
			gws[i].took = time.Since(at)
		})
	}
	wg.Wait()
	for i := range gws {
		if g := gws[i].g; g != nil {
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := g.Shutdown(ctx); err != nil {
					t.Errorf("gateway %d shutdown: %v", i, err)
				}
			})
		}
	}
	var out []time.Duration
	for i := range gws {
		if gws[i].err != nil {
			t.Fatalf("gateway %d: %v", i, gws[i].err)
		}
		out = append(out, gws[i].took)
	}
	// Leave a settled cluster behind: a node stopped mid-recovery leaks
	// its stores' goroutines.
	c.WaitReady()
	t.Logf("time to ready: %s %s %s (meta leader elected after %s)", out[0], out[1], out[2], <-leader)
	return out
}

// expectStatus returns nil when GET url answers want.
func expectStatus(url string, want int) error {
	code, _, err := getError(url)
	if err != nil {
		return err
	}
	if code != want {
		return fmt.Errorf("GET %s: status %d, want %d", url, code, want)
	}
	return nil
}

// pollUntil calls cond every 10 ms until it returns nil or deadline
// passes; unlike natstest.Eventually it may run off the test goroutine.
func pollUntil(deadline time.Time, cond func() error) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}
