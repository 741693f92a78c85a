package console

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// gatewayLikeRegistry has what a busy gateway's registry holds: the Go and
// process collectors, 4 protocols' worth of request series and the gauges
// the status reads.
func gatewayLikeRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_http_requests_total"}, []string{"route", "method", "code"})
	open := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchboard_open_streams"}, []string{"kind"})
	reg.MustRegister(req, open)
	routes := []string{"/create", "/write/:a/:s", "/read/:a", "/write-batch", "/channels/:ns/:name", "/mm", "/relay/:name/*", "/healthz", "/metrics"}
	for _, r := range routes {
		for _, code := range []int{200, 201, 400, 404, 408, 409, 503} {
			req.WithLabelValues(r, "POST", strconv.Itoa(code)).Add(17)
		}
	}
	for _, k := range []string{"poll", "sse", "pipe", "websocket", "relay"} {
		open.WithLabelValues(k).Set(3)
	}
	return reg
}

// BenchmarkSample is the work a gateway does once per ui.interval to
// build its status (one registry gather).
func BenchmarkSample(b *testing.B) {
	reg := gatewayLikeRegistry()
	b.ReportAllocs()
	for b.Loop() {
		_ = read(reg).totals()
	}
}

// BenchmarkReceiveStatus is the work every console does per status
// message from another gateway.
func BenchmarkReceiveStatus(b *testing.B) {
	raw, _ := json.Marshal(Status{
		ID: "gw-0123456789abcdefghij", Version: "v1.2.3", Started: 1, Listen: "10.0.0.1:8080", NATS: "nats://10.0.0.2:4222",
		Polls: 1000, Waiting: 10, Transfer: 3, MMConns: 500, Relayed: 7,
		Totals: map[string]Rate{"megaphone": {1e6, 0}, "pipe": {2e6, 0}, "middleman": {3e6, 0}, "relay": {4e6, 12}},
	})
	p := newPeers(time.Minute)
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		st, err := decodeStatus(raw)
		if err != nil {
			b.Fatal(err)
		}
		p.update(st, now)
	}
}
