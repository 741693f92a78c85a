package middleman

import "github.com/prometheus/client_golang/prometheus"

// commands are the known commands; every other command is counted as
// "other", so label values stay bounded.
var commands = []string{"PUB", "SUB", "UNS", "REQ", "RES", "EPUB", "ESUB", "EREQ", "INT"}

// outKinds label messages sent to clients.
var outKinds = []string{"PUB", "REQ", "RES", "ERROR", "HANDSHAKE"}

// metrics are the middleman's Prometheus metrics. Counters of the hot path
// are resolved once, so counting is one atomic add.
type metrics struct {
	conns *prometheus.GaugeVec
	in    map[string]prometheus.Counter
	out   map[string]prometheus.Counter
	errs  *prometheus.CounterVec
	slow  prometheus.Counter
	// refused counts messages from NATS dropped unread, by reason.
	refused map[string]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	conns := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "switchboard_middleman_connections",
		Help: "Authenticated middleman connections on this gateway, by trust (trusted, untrusted, super).",
	}, []string{"trust"})
	in := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_middleman_messages_in_total",
		Help: "Frames received from middleman clients, by command (other = unknown).",
	}, []string{"command"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_middleman_messages_out_total",
		Help: "Frames sent to middleman clients, by kind (PUB, REQ, RES, ERROR, HANDSHAKE).",
	}, []string{"kind"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_middleman_errors_total",
		Help: "Refused frames and failed handshakes, by reason.",
	}, []string{"reason"})
	slow := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_middleman_slow_consumer_closes_total",
		Help: "Connections closed with 1008 because their send queue overflowed.",
	})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_middleman_nats_refused_total",
		Help: "Messages from NATS this gateway dropped: malformed (an id, subject, header or kind no gateway makes) or unmatched (an answer for no waiting request: late, repeated or forged).",
	}, []string{"reason"})
	if reg != nil {
		reg.MustRegister(conns, in, out, errs, slow, refused)
	}
	m := &metrics{conns: conns, errs: errs, slow: slow, refused: map[string]prometheus.Counter{},
		in: map[string]prometheus.Counter{}, out: map[string]prometheus.Counter{}}
	for _, r := range []string{refusedMalformed, refusedUnmatched} {
		m.refused[r] = refused.WithLabelValues(r)
	}
	for _, c := range append(commands, "other") {
		m.in[c] = in.WithLabelValues(c)
	}
	for _, k := range outKinds {
		m.out[k] = out.WithLabelValues(k)
	}
	for _, t := range []string{"trusted", "untrusted", "super"} {
		conns.WithLabelValues(t)
	}
	return m
}

// registerDropped exports the messages NATS dropped for the hub's
// subscriptions because its dispatcher fell behind.
func registerDropped(reg prometheus.Registerer, dropped func() float64) {
	if reg == nil {
		return
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "switchboard_middleman_nats_dropped_total",
		Help: "Messages NATS dropped because this gateway's middleman dispatcher fell behind.",
	}, dropped))
}

func (m *metrics) received(cmd string) {
	c, ok := m.in[cmd]
	if !ok {
		c = m.in["other"]
	}
	c.Inc()
}

func (m *metrics) error(err error) { m.errs.WithLabelValues(Reason(err)).Inc() }
