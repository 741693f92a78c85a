package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/natstest"
)

// faultCluster is a 3-node NATS cluster, gateway processes on it (real
// binaries, so they can be SIGKILLed), and a round-robin balancer.
type faultCluster struct {
	t       *testing.T
	nats    *natstest.Cluster
	gws     []*harness.Process
	lb      *harness.Balancer
	gwFlags []string
}

func newFaultCluster(t *testing.T, gateways int, flags ...string) *faultCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("fault-tolerance tests start a cluster and gateway processes")
	}
	fc := &faultCluster{t: t, nats: natstest.NewCluster(t, 3), gwFlags: flags}
	for i := 0; i < gateways; i++ {
		fc.gws = append(fc.gws, fc.startGateway())
	}
	fc.lb = harness.NewBalancer(t, fc.urls()...)
	return fc
}

func (fc *faultCluster) startGateway() *harness.Process {
	args := append([]string{"--nats-url", fc.nats.URLs(), "--replicas", "3"}, fc.gwFlags...)
	return harness.StartProcess(fc.t, args...)
}

func (fc *faultCluster) urls() []string {
	var out []string
	for _, g := range fc.gws {
		out = append(out, g.URL())
	}
	return out
}

// replaceGateway SIGKILLs gateway i, starts a new one in its place and
// points the balancer at the live set.
func (fc *faultCluster) replaceGateway(i int) {
	fc.gws[i].Kill()
	fc.gws[i] = fc.startGateway()
	fc.lb.Set(fc.urls()...)
}

// allNATSURLs is every node's client URL, for clients that must reconnect.
func (fc *faultCluster) allNATSURLs() string { return strings.TrimSpace(fc.nats.URLs()) }

// startGatewayOn starts a gateway with the cluster's flags whose NATS
// connection starts at natsURLs only (it learns the other nodes from the
// cluster's INFO gossip).
func (fc *faultCluster) startGatewayOn(natsURLs string) *harness.Process {
	args := append([]string{"--nats-url", natsURLs, "--replicas", "3"}, fc.gwFlags...)
	return harness.StartProcess(fc.t, args...)
}

// restartGateway replaces gateway i gracefully, as a rolling deploy does:
// out of the balancer first, then (after beforeStop, if not nil, was
// called with its URL) SIGTERM and waiting for the exit, then a new
// gateway is started and put in the balancer. It returns the old process's
// exit error: nil for a clean stop.
func (fc *faultCluster) restartGateway(i int, beforeStop func(url string)) error {
	var others []string
	for j, g := range fc.gws {
		if j != i {
			others = append(others, g.URL())
		}
	}
	fc.lb.Set(others...)
	if beforeStop != nil {
		beforeStop(fc.gws[i].URL())
	}
	err := fc.gws[i].Stop()
	fc.gws[i] = fc.startGateway()
	fc.lb.Set(fc.urls()...)
	return err
}

// faultClient is an HTTP client with its own connection pool, closed at the
// end of the test (no keep-alive goroutine outlives it). Requests are
// bounded by their contexts.
func faultClient(t *testing.T) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
