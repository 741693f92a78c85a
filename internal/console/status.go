package console

import (
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Status is what a gateway tells every console of the cluster about
// itself. It holds no secret: no token, key, credential or channel
// address.
type Status struct {
	ID       string `json:"id"`
	Version  string `json:"version"`
	Started  int64  `json:"started"` // unix milliseconds
	Listen   string `json:"listen"`  // the listener's bound address
	NATS     string `json:"nats"`    // the NATS server connected to, credentials removed
	Polls    int64  `json:"polls"`   // open Megaphone read polls
	Waiting  int64  `json:"pipesWaiting"`
	Transfer int64  `json:"pipesTransferring"`
	MMConns  int64  `json:"mmConnections"`
	Relayed  int64  `json:"relayInFlight"`
	// Totals are this gateway's HTTP requests and errors since it started,
	// by protocol; consoles turn their differences into rates.
	Totals  map[string]Rate `json:"totals,omitempty"`
	Leaving bool            `json:"leaving,omitempty"`
}

// Rate is a number of requests and of errors (status >= 500): counts in
// [Status.Totals], per second in [Traffic].
type Rate struct {
	Req float64 `json:"req"`
	Err float64 `json:"err"`
}

// Bounds on what a status message may hold; anything else is dropped.
const (
	maxStatusBytes = 8 << 10
	maxIDLen       = 64
	maxTextLen     = 200
	maxGateways    = 256
)

var errBadStatus = errors.New("console: malformed status")

// decodeStatus parses and checks one status message from the network.
func decodeStatus(data []byte) (Status, error) {
	var s Status
	if len(data) > maxStatusBytes {
		return s, errBadStatus
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, errBadStatus
	}
	if s.ID == "" || len(s.ID) > maxIDLen || !printable(s.ID) {
		return s, errBadStatus
	}
	s.Version, s.Listen, s.NATS = clip(s.Version), clip(s.Listen), clip(s.NATS)
	for _, n := range []*int64{&s.Polls, &s.Waiting, &s.Transfer, &s.MMConns, &s.Relayed, &s.Started} {
		*n = max(*n, 0)
	}
	totals := map[string]Rate{}
	for _, p := range protocols {
		if r, ok := s.Totals[p]; ok && r.Req >= 0 && r.Err >= 0 && r.Req < 1e15 && r.Err < 1e15 {
			totals[p] = r
		}
	}
	s.Totals = totals
	return s, nil
}

// clip bounds a string from the network and drops what is not printable.
func clip(s string) string {
	if len(s) > maxTextLen {
		s = s[:maxTextLen]
	}
	s = strings.ToValidUTF8(s, "")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// peers keeps the last status of every gateway heard from, with expiry.
type peers struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]peer
}

type peer struct {
	Status
	seen time.Time
}

func newPeers(ttl time.Duration) *peers { return &peers{ttl: ttl, m: map[string]peer{}} }

// update records s; a leaving gateway is removed at once.
func (p *peers) update(s Status, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.Leaving {
		delete(p.m, s.ID)
		return
	}
	if _, known := p.m[s.ID]; !known && len(p.m) >= maxGateways {
		p.expire(now)
		if len(p.m) >= maxGateways {
			return
		}
	}
	p.m[s.ID] = peer{Status: s, seen: now}
}

func (p *peers) expire(now time.Time) {
	for id, e := range p.m {
		if now.Sub(e.seen) > p.ttl {
			delete(p.m, id)
		}
	}
}

// list returns the live gateways sorted by listen address, then id.
func (p *peers) list(now time.Time) []Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	out := make([]Status, 0, len(p.m))
	for _, e := range p.m {
		out = append(out, e.Status)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Listen != out[j].Listen {
			return out[i].Listen < out[j].Listen
		}
		return out[i].ID < out[j].ID
	})
	return out
}
