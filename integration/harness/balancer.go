package harness

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// Balancer is a plain round-robin load balancer for tests, configured the
// way deploy/lb is: no buffering (responses flushed as written), WebSocket
// upgrades passed through, no stickiness. A backend whose port refuses the
// connection is skipped, as a health-checking balancer would.
type Balancer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	backends []*url.URL
	next     atomic.Uint64
}

type backendKey struct{}

// NewBalancer starts a balancer in front of base URLs.
func NewBalancer(t testing.TB, bases ...string) *Balancer {
	t.Helper()
	b := &Balancer{}
	b.Set(bases...)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			u := r.In.Context().Value(backendKey{}).(*url.URL)
			r.SetURL(u)
			r.SetXForwarded()
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.serve(proxy, w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// URL is the balancer's base URL.
func (b *Balancer) URL() string { return b.srv.URL }

// Set replaces the backends.
func (b *Balancer) Set(bases ...string) {
	us := make([]*url.URL, 0, len(bases))
	for _, s := range bases {
		u, err := url.Parse(s)
		if err == nil {
			us = append(us, u)
		}
	}
	b.mu.Lock()
	b.backends = us
	b.mu.Unlock()
}

// serve picks backends round robin, skipping those that refuse connections.
func (b *Balancer) serve(proxy *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	backends := b.backends
	b.mu.Unlock()
	start := b.next.Add(1)
	for i := 0; i < len(backends); i++ {
		u := backends[(int(start)+i)%len(backends)]
		if !reachable(r.Context(), u.Host) {
			continue
		}
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, u)))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
}

func reachable(ctx context.Context, host string) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return !errors.Is(err, syscall.ECONNREFUSED)
	}
	c.Close()
	return true
}
