package relay

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the caller side's metrics. Upstream names are user input,
// so no label carries them: results and directions are fixed sets. A nil
// *Metrics records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	open     prometheus.Histogram
	bytes    *prometheus.CounterVec
	refused  *prometheus.CounterVec
	// Upgraded connections (upgrade.go).
	upOpen   prometheus.Gauge
	upBytes  *prometheus.CounterVec
	upClosed *prometheus.CounterVec
	// The children every request touches, looked up once.
	ok, reqBytes, respBytes prometheus.Counter
}

// Request results, the values of the "result" label.
const (
	ResultOK           = "ok"
	ResultCanceled     = "canceled"
	ResultAborted      = "aborted"
	ResultUnauthorized = "unauthorized"
)

// NewMetrics registers the relay metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_relay_requests_total",
			Help: "Relayed requests by result: ok (response relayed), no_agent, timeout, upstream_unreachable, agent_lost, bad_request, unauthorized, canceled, aborted (stream broke after the head).",
		}, []string{"result"}),
		open: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_relay_open_seconds",
			Help:    "Time until an agent accepted a relayed request (agent wait included).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .05, .25, 1, 5},
		}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_relay_bytes_total",
			Help: "Body bytes relayed, by direction (request, response).",
		}, []string{"direction"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_relay_agent_violations_total",
			Help: "Agent messages refused because they broke the relay protocol, by field: ctl or body (a subject outside the upstream's inbox space), stream (a body stream the agent did not open as agreed), head (a malformed response head), up (an upgraded stream subject outside the inbox space), trailer (malformed or forbidden response trailers).",
		}, []string{"field"}),
	}
	m.upOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "switchboard_relay_upgraded_open",
		Help: "Upgraded connections (WebSockets and other 101 protocols) open through the relay.",
	})
	m.upBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_relay_upgraded_bytes_total",
		Help: "Bytes relayed on upgraded connections, by direction: up (client to upstream), down (upstream to client).",
	}, []string{"direction"})
	m.upClosed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_relay_upgraded_closed_total",
		Help: "Upgraded connections closed, by reason: normal, caller, upstream, agent_lost, idle, shutdown.",
	}, []string{"reason"})
	m.ok = m.requests.WithLabelValues(ResultOK)
	m.reqBytes = m.bytes.WithLabelValues("request")
	m.respBytes = m.bytes.WithLabelValues("response")
	if reg != nil {
		reg.MustRegister(m.requests, m.open, m.bytes, m.refused, m.upOpen, m.upBytes, m.upClosed)
	}
	return m
}

// Result counts one finished request with a fixed result label.
func (m *Metrics) Result(result string) {
	switch {
	case m == nil:
	case result == ResultOK:
		m.ok.Inc()
	default:
		m.requests.WithLabelValues(result).Inc()
	}
}

// resultOf is the result label of a request that failed with err.
func resultOf(err error) string {
	for _, r := range []struct {
		err   error
		label string
	}{
		{ErrNoAgent, "no_agent"}, {ErrTimeout, "timeout"}, {ErrUpstreamUnreachable, "upstream_unreachable"},
		{ErrAgentLost, "agent_lost"}, {ErrBadRequest, "bad_request"}, {ErrUnauthorized, ResultUnauthorized},
		{ErrUpstreamBroken, ResultAborted},
	} {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return ResultCanceled
}

// violation counts an agent message refused for field.
func (m *Metrics) violation(field string) {
	if m != nil {
		m.refused.WithLabelValues(field).Inc()
	}
}

func (m *Metrics) observeOpen(d time.Duration) {
	if m != nil {
		m.open.Observe(d.Seconds())
	}
}

func (m *Metrics) addBytes(direction string, n int) {
	switch {
	case m == nil || n <= 0:
	case direction == "request":
		m.reqBytes.Add(float64(n))
	case direction == "response":
		m.respBytes.Add(float64(n))
	default:
		m.bytes.WithLabelValues(direction).Add(float64(n))
	}
}

func (m *Metrics) upgradeOpen(d int) {
	if m != nil {
		m.upOpen.Add(float64(d))
	}
}

func (m *Metrics) upgradeBytes(direction string, n int) {
	if m != nil && n > 0 {
		m.upBytes.WithLabelValues(direction).Add(float64(n))
	}
}

func (m *Metrics) upgradeClosed(reason string) {
	if m != nil {
		m.upClosed.WithLabelValues(reason).Inc()
	}
}
