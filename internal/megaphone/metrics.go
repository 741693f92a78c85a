package megaphone

import "github.com/prometheus/client_golang/prometheus"

// metrics are the original broker's counters, per gateway.
type metrics struct {
	created     prometheus.Counter
	disposed    prometheus.Counter
	received    prometheus.Counter
	read        prometheus.Counter
	unroutable  prometheus.Counter
	lost        prometheus.Counter
	openReaders prometheus.Gauge
	webhook     *prometheus.CounterVec
	queued      *prometheus.CounterVec // result: opened, or the refusal's status code
	handoffs    *prometheus.CounterVec // result: given, busy, unanswered
	// queuedOpened is queued's "opened" counter, looked up once: it is
	// counted per queued poll, and a burst queues thousands.
	queuedOpened prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		created:    c("megaphone_channel_created", "Channels created through this gateway."),
		disposed:   c("megaphone_channel_disposed", "Channels disposed (expired or deleted) by this gateway."),
		received:   c("megaphone_messages_received", "Events stored through this gateway."),
		read:       c("megaphone_messages_read", "Events delivered to readers by this gateway."),
		unroutable: c("megaphone_messages_unroutable", "Events written to unknown channels."),
		lost:       c("megaphone_messages_lost", "Buffered events purged with their channel, never read."),
		openReaders: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "megaphone_open_readers", Help: "Read polls open on this gateway.",
		}),
		webhook: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "megaphone_webhook_batches_total",
			Help: "on-channel-deleted webhook batches by result (delivered, failed after retries).",
		}, []string{"result"}),
		queued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "megaphone_queued_polls_total",
			Help: "Read polls taken over from net/http to wait for an opening slot, by outcome: opened, or the status code they were refused with (their http_requests_total entry is the 200 of the takeover).",
		}, []string{"result"}),
	}
	m.handoffs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "megaphone_claim_handoffs_total",
		Help: "Reader claims this gateway asked another gateway (or found itself) holding between a channel's polls to hand over, by result: given, busy (a poll reads the channel there: 409), unanswered (the holder is gone or slow: 409 until the claim's TTL ends).",
	}, []string{"result"})
	m.queuedOpened = m.queued.WithLabelValues("opened")
	if reg != nil {
		reg.MustRegister(m.created, m.disposed, m.received, m.read, m.unroutable, m.lost, m.openReaders, m.webhook, m.queued, m.handoffs)
	}
	return m
}
