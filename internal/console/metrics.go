package console

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// protocols are the traffic series, in the order the page draws them.
var protocols = []string{"megaphone", "pipe", "middleman", "relay"}

// protocolOf maps an HTTP route template to its protocol, "" for the
// gateway's own routes.
func protocolOf(route string) string {
	switch {
	case route == "/create" || route == "/write-batch" || route == "/channelsExists" ||
		strings.HasPrefix(route, "/write/") || strings.HasPrefix(route, "/read/"):
		return "megaphone"
	case route == "/state" || strings.HasPrefix(route, "/channels"):
		return "pipe"
	case route == "/mm":
		return "middleman"
	case strings.HasPrefix(route, "/relay/"):
		return "relay"
	}
	return ""
}

// sample is what one reading of the gateway's own metrics gives.
type sample struct {
	req, err                                  map[string]float64 // cumulative, by protocol
	polls, waiting, pipes, mmConns, relayOpen float64
}

// read gathers the registry once.
func read(g prometheus.Gatherer) sample {
	s := sample{req: map[string]float64{}, err: map[string]float64{}}
	families, _ := g.Gather() // a partial gather still has the families that worked
	for _, f := range families {
		for _, m := range f.GetMetric() {
			s.add(f.GetName(), m)
		}
	}
	return s
}

func (s *sample) add(name string, m *dto.Metric) {
	switch name {
	case "switchboard_http_requests_total":
		p := protocolOf(label(m, "route"))
		if p == "" {
			return
		}
		v := m.GetCounter().GetValue()
		s.req[p] += v
		if code, _ := strconv.Atoi(label(m, "code")); code >= 500 {
			s.err[p] += v
		}
	case "megaphone_open_readers":
		s.polls += m.GetGauge().GetValue()
	case "switchboard_pipe_waiting":
		s.waiting += m.GetGauge().GetValue()
	case "switchboard_middleman_connections":
		s.mmConns += m.GetGauge().GetValue()
	case "switchboard_open_streams":
		switch label(m, "kind") {
		case "pipe":
			s.pipes += m.GetGauge().GetValue()
		case "relay":
			s.relayOpen += m.GetGauge().GetValue()
		}
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// totals are the cumulative request and error counts of a sample.
func (s sample) totals() map[string]Rate {
	out := make(map[string]Rate, len(protocols))
	for _, p := range protocols {
		out[p] = Rate{Req: s.req[p], Err: s.err[p]}
	}
	return out
}

// rater turns the totals of the cluster's gateways, read once per
// interval, into cluster-wide rates: per gateway the growth since the
// previous reading, summed. A gateway seen for the first time only sets
// its baseline and a counter that went back (a restart under the same id)
// counts as 0, so every request is counted once, at most one interval
// late, whatever the timing of the gateways' statuses.
type rater struct {
	last map[string]map[string]Rate // gateway id → totals at the previous reading
	at   time.Time
}

func (r *rater) rates(gateways []Status, now time.Time) map[string]Rate {
	out := make(map[string]Rate, len(protocols))
	secs := now.Sub(r.at).Seconds()
	next := make(map[string]map[string]Rate, len(gateways))
	for _, g := range gateways {
		next[g.ID] = g.Totals
		prev, seen := r.last[g.ID]
		if !seen || secs <= 0 || r.at.IsZero() {
			continue
		}
		for _, p := range protocols {
			o := out[p]
			o.Req += max(g.Totals[p].Req-prev[p].Req, 0) / secs
			o.Err += max(g.Totals[p].Err-prev[p].Err, 0) / secs
			out[p] = o
		}
	}
	r.last, r.at = next, now
	return out
}

// historyLen is the number of samples kept: 5 minutes at the default
// interval.
const historyLen = 150

// history is a ring of cluster-wide traffic samples.
type history struct {
	mu    sync.Mutex
	at    []int64 // unix milliseconds
	rates []map[string]Rate
}

func (h *history) add(at int64, r map[string]Rate) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.at = append(h.at, at)
	h.rates = append(h.rates, r)
	if n := len(h.at) - historyLen; n > 0 {
		h.at = append(h.at[:0:0], h.at[n:]...)
		h.rates = append(h.rates[:0:0], h.rates[n:]...)
	}
}

// Traffic is the cluster's request and error rates per protocol over the
// last minutes: At[i] (unix ms) is the time of Series[p].Req[i].
type Traffic struct {
	At     []int64           `json:"at"`
	Series map[string]Series `json:"series"`
}

// Series is one protocol's rates over time.
type Series struct {
	Req []float64 `json:"req"`
	Err []float64 `json:"err"`
}

func (h *history) snapshot() Traffic {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := Traffic{At: append([]int64{}, h.at...), Series: map[string]Series{}}
	for _, p := range protocols {
		s := Series{Req: make([]float64, len(h.rates)), Err: make([]float64, len(h.rates))}
		for i, r := range h.rates {
			s.Req[i], s.Err[i] = r[p].Req, r[p].Err
		}
		t.Series[p] = s
	}
	return t
}
