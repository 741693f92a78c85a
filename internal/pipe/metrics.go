package pipe

import "github.com/prometheus/client_golang/prometheus"

// metrics are the pipe metrics of one gateway. Labels come from fixed sets.
type metrics struct {
	waiting   *prometheus.GaugeVec   // role
	matches   *prometheus.CounterVec // path: local, remote
	claims    *prometheus.CounterVec // result: accepted, refused, dead, foreign
	ended     *prometheus.CounterVec // reason: timeout, gone, disconnect, shutdown, lost
	transfers *prometheus.CounterVec // result: ok, producer_lost, consumer_lost, bad_length, shutdown
	bytes     prometheus.Counter
	wait      prometheus.Histogram
	swept     prometheus.Counter
	contended prometheus.Counter
	retried   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_pipe_waiting",
			Help: "Pipe parties waiting for a partner on this gateway, by role.",
		}, []string{"role"}),
		matches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_pipe_matches_total",
			Help: "Producer-consumer pairs matched by this gateway, by path (local: both on this gateway).",
		}, []string{"path"}),
		claims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_pipe_claims_total",
			Help: "Claims of a waiting party's queue entry made by this gateway, by result (foreign: a claim or claim answer naming a subject outside the gateways' inbox space, dropped).",
		}, []string{"result"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_pipe_unpaired_total",
			Help: "Waiting parties that left without a partner, by reason.",
		}, []string{"reason"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_pipe_transfers_total",
			Help: "Finished transfers seen by the producer's side, by result.",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_pipe_bytes_total",
			Help: "Body bytes streamed to pipe consumers by this gateway.",
		}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_pipe_wait_seconds",
			Help:    "Time from arrival to pairing.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30, 300},
		}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_pipe_swept_gateways_total",
			Help: "Vanished gateways whose stale queue entries this gateway removed.",
		}),
		contended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_pipe_matcher_waits_total",
			Help: "Times an arrival found another party matching its channel and backed off.",
		}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_pipe_delete_retries_total",
			Help: "Queue entries of parties that left whose deletion failed (JetStream unavailable) and is retried in the background.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.waiting, m.matches, m.claims, m.ended, m.transfers, m.bytes, m.wait, m.swept, m.contended, m.retried)
	}
	return m
}
