package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/switchboard/switchboard/internal/natstest"
)

// relayCall is one request through the balancer.
type relayCall struct {
	start, end time.Time
	status     int
	err        error
}

func (c relayCall) ok() bool { return c.err == nil && c.status == http.StatusOK }

// agentNode returns the index of the running NATS node the named client
// connection is on, or -1.
func agentNode(fc *faultCluster, connName string) int {
	for i, s := range fc.nats.Servers {
		if s.Server == nil || !s.Running() {
			continue
		}
		cz, err := s.Connz(&server.ConnzOptions{})
		if err != nil {
			continue
		}
		for _, c := range cz.Conns {
			if c.Name == connName {
				return i
			}
		}
	}
	return -1
}

// TestFaultRelayAgentNodeKilled stops NATS node 3 — the only node the
// `agent upstream` was given (it learns the others from the cluster's INFO
// gossip) — while two callers keep sending relay requests through the
// balancer in front of two gateways connected to node 1; node 3 is then
// restarted. It proves that the agent reconnects to another node by
// itself and that requests through the balancer succeed again within 15 s
// of the stop, and fail no more from then on (also across node 3's
// restart). It counts succeeded and failed requests during the outage.
func TestFaultRelayAgentNodeKilled(t *testing.T) {
	fc := newFaultCluster(t, 0, "--relay-agent-wait", "2s", "--relay-ack-timeout", "1s")
	node1 := fc.nats.Servers[0].ClientURL()
	for i := 0; i < 2; i++ {
		fc.gws = append(fc.gws, fc.startGatewayOn(node1))
	}
	fc.lb.Set(fc.urls()...)

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // requests are in flight when the node stops
		fmt.Fprint(w, "pong "+r.URL.RawQuery)
	}))
	t.Cleanup(upstream.Close)
	const connName = "switchboard-agent upstream=faulty"
	startAgent(t, agentConfig(t, fc.nats.Servers[2].ClientURL(), map[string]string{"faulty": upstream.URL}))
	if n := agentNode(fc, connName); n != 2 {
		t.Fatalf("agent is on node %d, want node 3", n+1)
	}

	client := faultClient(t)
	call := func(ctx context.Context, q string) relayCall {
		c := relayCall{start: time.Now()}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, fc.lb.URL()+"/relay/faulty/ping?"+q, nil)
		resp, err := client.Do(req)
		if err == nil {
			var b []byte
			b, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			c.status = resp.StatusCode
			if err == nil && c.status == http.StatusOK && string(b) != "pong "+q {
				err = fmt.Errorf("wrong answer %q", b)
			}
		}
		c.err, c.end = err, time.Now()
		return c
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		if c := call(context.Background(), "warmup"); !c.ok() {
			return fmt.Errorf("%d %v", c.status, c.err)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var (
		mu    sync.Mutex
		calls []relayCall
	)
	okSince := func(since time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range calls {
			if c.ok() && !c.start.Before(since) {
				n++
			}
		}
		return n
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for caller := 0; caller < 2; caller++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := call(ctx, fmt.Sprintf("c=%d&i=%d", caller, i))
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer stopLoad()

	start := time.Now()
	natstest.Eventually(t, 20*time.Second, func() error {
		if n := okSince(start); n < 20 {
			return fmt.Errorf("%d requests succeeded before the outage", n)
		}
		return nil
	})

	stopped := time.Now()
	fc.nats.Stop(2)
	var reconnected time.Time
	var newNode int
	natstest.Eventually(t, 20*time.Second, func() error {
		if newNode = agentNode(fc, connName); newNode < 0 {
			return fmt.Errorf("agent not connected to any running node")
		}
		reconnected = time.Now()
		return nil
	})
	// Recovered: the first request sent after the stop that succeeded.
	var recovered time.Time
	natstest.Eventually(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if c.ok() && c.start.After(stopped) {
				recovered = c.end
				return nil
			}
		}
		return fmt.Errorf("no request sent after the stop succeeded yet")
	})
	natstest.Eventually(t, 30*time.Second, func() error {
		if n := okSince(recovered); n < 40 || time.Since(stopped) < 3*time.Second {
			return fmt.Errorf("%d requests succeeded since recovery", n)
		}
		return nil
	})

	restarted := time.Now()
	fc.nats.Restart(2)
	natstest.Eventually(t, 30*time.Second, func() error {
		if n := okSince(restarted); n < 20 {
			return fmt.Errorf("%d requests succeeded since node 3 restarted", n)
		}
		return nil
	})
	stopLoad()

	mu.Lock()
	defer mu.Unlock()
	// Windows: ended before the stop; in flight at the stop; sent while
	// node 3 was down; sent after its restart.
	type tally struct{ ok, failed int }
	var before, inFlight, down, after tally
	var late []string // failures of requests sent after the recovery
	for _, c := range calls {
		w := &after
		switch {
		case c.end.Before(stopped):
			w = &before
		case c.start.Before(stopped):
			w = &inFlight
		case c.start.Before(restarted):
			w = &down
		}
		if c.ok() {
			w.ok++
			continue
		}
		w.failed++
		if w == &before || !c.start.Before(recovered) {
			late = append(late, fmt.Sprintf("sent at stop%+v: %d %v", c.start.Sub(stopped).Round(time.Millisecond), c.status, c.err))
		}
	}
	t.Logf("relay fault (NATS node 3 stopped under the agent, then restarted): requests=%d; before the stop ok=%d failed=%d; "+
		"in flight at the stop ok=%d failed=%d; sent while node 3 was down ok=%d failed=%d; sent after its restart ok=%d failed=%d; "+
		"agent reconnected to node %d %s after the stop; first success sent after the stop ended %s after it; failures after recovery: %d",
		len(calls), before.ok, before.failed, inFlight.ok, inFlight.failed, down.ok, down.failed, after.ok, after.failed,
		newNode+1, reconnected.Sub(stopped).Round(time.Millisecond), recovered.Sub(stopped).Round(time.Millisecond), len(late))
	if d := recovered.Sub(stopped); d > 15*time.Second {
		t.Errorf("requests succeeded again only %s after the stop (bound 15 s)", d)
	}
	if len(late) > 0 {
		t.Errorf("requests failed outside the outage: %s", strings.Join(late, "; "))
	}
}
