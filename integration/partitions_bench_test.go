package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/subjects"
)

// partitionsBenchFor is how long each load of BenchmarkPartitions runs.
const partitionsBenchFor = 3 * time.Second

// partitionsBenchRounds is how many times each case is measured.
const partitionsBenchRounds = 3

// partitionsCase is one cluster of BenchmarkPartitions.
type partitionsCase struct {
	k        int
	natsURLs string
	urls     []string
	writes   []float64
	handoffs []float64
}

// BenchmarkPartitions measures Megaphone writes/s (64 writers on 64
// channels, no reader: one stream store each) and pipe hand-offs/s (16
// pairs, 1 KiB, producer and consumer on different gateways) on two
// 3-node clusters (R3, three gateways each) running side by side, one
// with 1 partition and one with 3, their partition leaders spread over
// the nodes by step-downs. The two are measured in turn, round after
// round, so a change in the machine's load hits both; it reports the
// median of each and logs every round and the leader placement. Run it
// with -benchtime 1x: the rounds run a fixed time.
//
//	go test ./integration/ -run '^$' -bench Partitions -benchtime 1x
func BenchmarkPartitions(b *testing.B) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var cases []*partitionsCase
	for _, k := range []int{1, 3} {
		cluster, gws := harness.StartOnCluster(b, 3, func(c *gateway.Config) {
			c.Log.Level = "error"
			c.JetStream.Partitions = k
			c.Megaphone.BufferSize = 1 << 20 // no reader: never full
		})
		pc := &partitionsCase{k: k, natsURLs: cluster.URLs()}
		for _, g := range gws {
			pc.urls = append(pc.urls, g.URL())
		}
		spreadBenchLeaders(b, pc.natsURLs, k)
		cases = append(cases, pc)
	}
	b.ResetTimer()
	for round := range partitionsBenchRounds {
		for _, pc := range cases {
			w, h := benchWrites(b, client, pc.urls, 64), benchHandoffs(b, client, pc.urls, 16)
			pc.writes, pc.handoffs = append(pc.writes, w), append(pc.handoffs, h)
			b.Logf("round %d, partitions %d: %.0f Megaphone writes/s, %.0f pipe hand-offs/s", round+1, pc.k, w, h)
		}
	}
	b.StopTimer()
	for _, pc := range cases {
		w, h := median(pc.writes), median(pc.handoffs)
		b.ReportMetric(w, fmt.Sprintf("writes/s-K%d", pc.k))
		b.ReportMetric(h, fmt.Sprintf("handoffs/s-K%d", pc.k))
		b.Logf("partitions %d: median %.0f writes/s, %.0f hand-offs/s; leaders: %s", pc.k, w, h, leaderPlacement(b, pc.natsURLs, pc.k))
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchWrites runs c writers, one channel each, for partitionsBenchFor and
// returns the acknowledged writes per second.
func benchWrites(b *testing.B, client *http.Client, urls []string, c int) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	producers := make([]string, c)
	for i := range producers {
		var ch struct{ ProducerAddress string }
		if err := postJSON(ctx, client, urls[i%len(urls)]+"/create", &ch); err != nil {
			b.Fatal(err)
		}
		producers[i] = ch.ProducerAddress
	}
	var ok, failed atomic.Int64
	deadline := time.Now().Add(partitionsBenchFor)
	var wg sync.WaitGroup
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := urls[i%len(urls)] + "/write/" + producers[i] + "/s"
			for time.Now().Before(deadline) {
				resp, err := client.Post(u, "application/json", strings.NewReader(`{"pad":"0123456789012345678901234567890123456789"}`))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Logf("%d writes failed", failed.Load())
	}
	return float64(ok.Load()) / partitionsBenchFor.Seconds()
}

// benchHandoffs runs c workers, each handing 1 KiB from a producer on one
// gateway to a consumer on the next, a fresh channel per hand-off, for
// partitionsBenchFor and returns the completed hand-offs per second.
func benchHandoffs(b *testing.B, client *http.Client, urls []string, c int) float64 {
	payload := bytes.Repeat([]byte("x"), 1024)
	var ok, failed atomic.Int64
	deadline := time.Now().Add(partitionsBenchFor)
	var wg sync.WaitGroup
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				ch := fmt.Sprintf("/channels/bench/w%d-%d", i, n)
				got := make(chan int64, 1)
				go func() {
					resp, err := client.Get(urls[(i+n+1)%len(urls)] + ch)
					if err != nil {
						got <- -1
						return
					}
					m, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					got <- m
				}()
				resp, err := client.Post(urls[(i+n)%len(urls)]+ch, "application/octet-stream", bytes.NewReader(payload))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if m := <-got; err == nil && m == int64(len(payload)) {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Logf("%d hand-offs failed", failed.Load())
	}
	return float64(ok.Load()) / partitionsBenchFor.Seconds()
}

// spreadBenchLeaders puts the leaders of the k event partitions, and of
// the k queue partitions, on different nodes where they crowd (leader
// step-downs), as an operator would before measuring.
func spreadBenchLeaders(b *testing.B, natsURLs string, k int) {
	b.Helper()
	nc, err := nats.Connect(natsURLs)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var events, queues []string
	for p := range k {
		events, queues = append(events, subjects.MegaphoneStreamOf(p, k)), append(queues, subjects.PipeStreamOf(p, k))
	}
	spreadLeaders(b, nc, js, events, 3)
	spreadLeaders(b, nc, js, queues, 3)
}

// leaderPlacement names the leader node of each event and queue stream
// partition.
func leaderPlacement(b *testing.B, natsURLs string, k int) string {
	b.Helper()
	js := partitionJS(b, natsURLs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	for p := range k {
		for _, name := range []string{subjects.MegaphoneStreamOf(p, k), subjects.PipeStreamOf(p, k)} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				b.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil || info.Cluster == nil {
				b.Fatalf("stream %s: %v", name, err)
			}
			out = append(out, name+"@"+info.Cluster.Leader)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
