// Package natstest starts real nats-servers for tests: a single JetStream
// server or a JetStream cluster on loopback with random ports and temporary
// stores, plus polling helpers. Nothing here sleeps for a guessed time.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Server is a nats-server started for a test.
type Server struct {
	*server.Server
	opts        *server.Options
	port        int
	clusterPort int
}

// URL is the client URL.
func (s *Server) URL() string { return s.ClientURL() }

// Options returns a copy of the options the server runs with.
func (s *Server) Options() server.Options { return *s.opts }

// RunServer starts a single JetStream server on a random loopback port with
// its store in a temp dir. modify, if non-nil, may change the options.
func RunServer(t testing.TB, modify func(*server.Options)) *Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "test",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}
	if modify != nil {
		modify(opts)
	}
	s := start(t, opts)
	t.Cleanup(s.stop)
	return s
}

func start(t testing.TB, opts *server.Options) *Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		ns.Shutdown()
		t.Fatalf("natstest: server %s not ready", opts.ServerName)
	}
	s := &Server{Server: ns, opts: opts, port: ns.Addr().(*net.TCPAddr).Port}
	if a := ns.ClusterAddr(); a != nil {
		s.clusterPort = a.Port
	}
	return s
}

func (s *Server) stop() {
	if s.Server != nil && s.Running() {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Cluster is a JetStream cluster of nats-servers on loopback.
type Cluster struct {
	t       testing.TB
	Servers []*Server
}

// NewCluster starts n JetStream servers routed into one cluster and waits,
// by polling, until every server is current and a meta leader is elected.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := StartCluster(t, n)
	c.WaitReady()
	return c
}

// StartCluster starts n JetStream servers routed into one cluster and
// returns as soon as each accepts clients, without waiting for routes or a
// meta leader: a cluster formed a moment ago, as after docker compose up.
//
// A JetStream cluster needs its routes configured at start, so the route
// ports are reserved first: each is held open by a listener until just
// before its server binds it.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	holds := make([]net.Listener, n)
	routes := make([]*url.URL, n)
	for i := range holds {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: reserve route port: %v", err)
		}
		holds[i] = ln
		routes[i] = &url.URL{Scheme: "nats-route", Host: ln.Addr().String()}
	}
	// The stores first: cleanups run last-registered first, so the
	// servers stop before their stores are removed.
	stores := make([]string, n)
	for i := range stores {
		stores[i] = t.TempDir()
	}
	t.Cleanup(c.Shutdown)
	for i := 0; i < n; i++ {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   stores[i],
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "switchboard-test",
				Host: "127.0.0.1",
				Port: holds[i].Addr().(*net.TCPAddr).Port,
			},
			Routes: routes,
		}
		holds[i].Close()
		c.Servers = append(c.Servers, start(t, opts))
	}
	return c
}

// URLs returns the client URLs of the running servers, comma-separated.
func (c *Cluster) URLs() string {
	out := ""
	for _, s := range c.Servers {
		if s.Server == nil || !s.Running() {
			continue
		}
		if out != "" {
			out += ","
		}
		out += s.ClientURL()
	}
	return out
}

// WaitReady waits until all running servers are routed together, are
// current with JetStream meta state, and one of them is meta leader.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	running := 0
	for _, s := range c.Servers {
		if s.Server != nil && s.Running() {
			running++
		}
	}
	Eventually(c.t, 30*time.Second, func() error {
		leader := false
		for _, s := range c.Servers {
			if s.Server == nil || !s.Running() {
				continue
			}
			if got := s.NumRoutes(); got < running-1 {
				return fmt.Errorf("%s has %d routes, want %d", s.Name(), got, running-1)
			}
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("%s is not current", s.Name())
			}
			// Every stream and consumer replica recovered and caught up:
			// a node stopped mid-recovery leaks its stores' goroutines.
			if h := s.Healthz(&server.HealthzOptions{}); h.Status != "ok" {
				return fmt.Errorf("%s is not healthy: %s", s.Name(), h.Error)
			}
			leader = leader || s.JetStreamIsLeader()
		}
		if !leader {
			return fmt.Errorf("no meta leader")
		}
		return nil
	})
}

// Stop shuts server i down (its store stays for Restart).
func (c *Cluster) Stop(i int) {
	c.Servers[i].stop()
}

// Restart starts the servers idx again on their old ports and stores, routed to the
// other servers, and waits for the cluster to be ready.
func (c *Cluster) Restart(idx ...int) {
	c.t.Helper()
	for _, i := range idx {
		old := c.Servers[i]
		opts := *old.opts
		opts.Port = old.port
		opts.Cluster.Port = old.clusterPort
		c.Servers[i] = start(c.t, &opts)
	}
	c.WaitReady()
}

// Shutdown stops every server.
func (c *Cluster) Shutdown() {
	for _, s := range c.Servers {
		s.stop()
	}
}

// Connect connects a client to url for the test; it is closed when the
// test ends.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Restart starts a stopped single server again on the same client port and
// store.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	opts := *s.opts
	opts.Port = s.port
	ns := start(t, &opts)
	s.Server = ns.Server
	t.Cleanup(s.stop)
}

// Stop shuts the server down, keeping its store for Restart.
func (s *Server) Stop() { s.stop() }
