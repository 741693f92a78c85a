package console

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/httpx"
)

// apiTimeout bounds the NATS calls behind one /admin/api/ request.
const apiTimeout = 3 * time.Second

// local lets a request through when the console is open to its client:
// always with a token configured (the page then asks for it), only from
// this host without one.
func (s *Service) local(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Token == "" && !fromThisHost(r) {
			httpx.WriteError(w, http.StatusForbidden, "FORBIDDEN", "the console is off for remote clients: set ui.token (or megaphone.admin_token) to open it")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// fromThisHost reports whether r comes straight from a loopback address:
// a peer on 127.0.0.0/8 or ::1 that sent no forwarding header (a reverse
// proxy on the same host would make every client look local).
func fromThisHost(r *http.Request) bool {
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"} {
		if r.Header.Get(h) != "" {
			return false
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// authorized checks the bearer token in constant time.
func (s *Service) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return fromThisHost(r)
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

// api wraps a JSON handler with the bearer check and a deadline.
func (s *Service) api(fn func(ctx context.Context, r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !s.authorized(r) {
			if s.cfg.Token == "" {
				httpx.WriteError(w, http.StatusForbidden, "FORBIDDEN", "the console is off for remote clients: set ui.token")
				return
			}
			httpx.WriteError(w, http.StatusUnauthorized, httpx.CodeUnauthorized, "missing or wrong bearer token")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
		defer cancel()
		v, err := fn(ctx, r)
		if err != nil {
			s.log.Warn("admin api", "path", r.URL.Path, "err", err)
			httpx.WriteError(w, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	})
}

// authInfo answers /admin/api/auth, the one API route open to anyone: it
// says whether the request's token (if any) opens the console, so the page
// can ask for one without provoking an error.
type authInfo struct {
	Authorized    bool   `json:"authorized"`
	TokenRequired bool   `json:"tokenRequired"`
	Off           bool   `json:"off,omitempty"` // no token configured and the client is remote
	Self          string `json:"self,omitempty"`
	Channels      bool   `json:"channels,omitempty"`
}

func (s *Service) authHandler(w http.ResponseWriter, r *http.Request) {
	a := authInfo{Authorized: s.authorized(r), TokenRequired: s.cfg.Token != ""}
	a.Off = !a.TokenRequired && !a.Authorized
	if a.Authorized {
		a.Self, a.Channels = s.id, s.deps.Channels != nil
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a)
}

// clusterInfo answers /admin/api/cluster.
type clusterInfo struct {
	Self     string   `json:"self"`
	Now      int64    `json:"now"`
	Gateways []Status `json:"gateways"`
}

func (s *Service) cluster(context.Context, *http.Request) (any, error) {
	now := time.Now()
	return clusterInfo{Self: s.id, Now: now.UnixMilli(), Gateways: s.peers.list(now)}, nil
}

func (s *Service) trafficInfo(context.Context, *http.Request) (any, error) {
	t := s.traffic.snapshot()
	return struct {
		IntervalMS int64 `json:"intervalMs"`
		Traffic
	}{s.cfg.Interval.Milliseconds(), t}, nil
}

// channelsInfo answers /admin/api/channels.
type channelsInfo struct {
	Count    int           `json:"count"`
	Channels []ChannelInfo `json:"channels"`
}

// maxChannelsListed bounds the listing the page gets; Count is exact.
const maxChannelsListed = 500

func (s *Service) channels(ctx context.Context, _ *http.Request) (any, error) {
	if s.deps.Channels == nil {
		return channelsInfo{Channels: []ChannelInfo{}}, nil
	}
	list, err := s.deps.Channels(ctx)
	if err != nil {
		return nil, err
	}
	out := channelsInfo{Count: len(list), Channels: list}
	if len(list) > maxChannelsListed {
		out.Channels = list[:maxChannelsListed]
	}
	return out, nil
}
