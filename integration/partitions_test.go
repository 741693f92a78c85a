package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// partitionJS is a JetStream client on natsURL for looking at partitions.
func partitionJS(t testing.TB, natsURL string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// streamMsgs returns the message count of stream name.
func streamMsgs(ctx context.Context, js jetstream.JetStream, name string) (uint64, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", name, err)
	}
	return info.State.Msgs, nil
}

// TestPartitionsSpread: with jetstream.partitions = 4, Megaphone channels
// (their events and their keys) and waiting pipe parties land on all 4
// partitions, each where internal/subjects maps it, as JetStream's stream
// info shows; the unpartitioned streams do not exist.
func TestPartitionsSpread(t *testing.T) {
	const k = 4
	srv := natstest.RunServer(t, nil)
	gws := harness.StartN(t, 2, srv.URL(), func(c *gateway.Config) { c.JetStream.Partitions = k })
	js := partitionJS(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := faultClient(t)

	// Channel ids are random: create channels until every partition holds
	// at least two (24 channels leave one empty about 2% of the time), up
	// to a bound that an even hash reaches with certainty in practice.
	want := make([]uint64, k)
	covered := func() bool {
		for _, n := range want {
			if n < 2 {
				return false
			}
		}
		return true
	}
	for i := 0; i < 24 || !covered(); i++ {
		if i == 400 {
			t.Fatalf("400 channels did not cover %d partitions: %v", k, want)
		}
		base := gws[i%2].URL()
		var ch struct{ ConsumerAddress, ProducerAddress string }
		if err := postJSON(ctx, client, base+"/create", &ch); err != nil {
			t.Fatal(err)
		}
		if err := postJSON(ctx, client, base+"/write/"+ch.ProducerAddress+"/s", nil); err != nil {
			t.Fatal(err)
		}
		want[subjects.MegaphonePartition(strings.Split(ch.ConsumerAddress, ".")[1], k)]++
	}
	for p := range k {
		n, err := streamMsgs(ctx, js, subjects.MegaphoneStreamOf(p, k))
		if err != nil || n != want[p] {
			t.Errorf("partition %d: %d events (%v), want %d", p, n, err, want[p])
		}
		keys, err := streamMsgs(ctx, js, subjects.KVStream(subjects.MegaphoneChannelsBucketOf(p, k)))
		if err != nil || keys != want[p] {
			t.Errorf("partition %d: %d channel keys (%v), want %d", p, keys, err, want[p])
		}
	}
	t.Logf("Megaphone channels per partition: %v", want)

	// Waiting pipe consumers, one per channel, on both gateways.
	pctx, pcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { pcancel(); wg.Wait() }()
	wantPipe := make([]uint64, k)
	for i := range 24 {
		name := fmt.Sprintf("ch%d", i)
		p, err := subjects.PipeChannelPartition("spread", name, k)
		if err != nil {
			t.Fatal(err)
		}
		wantPipe[p]++
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(pctx, http.MethodGet, gws[i%2].URL()+"/channels/spread/"+url.PathEscape(name), nil)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		for p := range k {
			n, err := streamMsgs(ctx, js, subjects.PipeStreamOf(p, k))
			if err != nil {
				return err
			}
			if n != wantPipe[p] {
				return fmt.Errorf("pipe partition %d holds %d entries, want %d (%v)", p, n, wantPipe[p], wantPipe)
			}
		}
		return nil
	})
	for _, name := range []string{subjects.MegaphoneStream, subjects.PipeStream, subjects.KVStream(subjects.MegaphoneChannelsBucket)} {
		if _, err := js.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("unpartitioned stream %s: %v, want not found", name, err)
		}
	}
}

func postJSON(ctx context.Context, client *http.Client, u string, out any) error {
	body := ""
	if out == nil {
		body = `{"n":1}`
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %d", u, resp.StatusCode)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// startExpectingFailure starts a gateway with cfg and returns why it
// failed to start; it fails the test if the gateway became ready.
func startExpectingFailure(t *testing.T, cfg *gateway.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := gateway.Start(ctx, cfg, harness.LoggerAt(t, "info"))
	if err != nil {
		return err
	}
	defer func() { _ = g.Shutdown(ctx) }()
	if err := g.WaitReady(ctx); err != nil {
		return err
	}
	t.Fatalf("gateway with jetstream.partitions %d started", cfg.JetStream.Partitions)
	return nil
}

// TestPartitionsMismatchRefused: the first gateway records the cluster's
// partition count; a gateway started with another count refuses to start
// with an error naming both; one with the same count starts. A cluster
// whose unpartitioned streams predate the record counts as 1.
func TestPartitionsMismatchRefused(t *testing.T) {
	srv := natstest.RunServer(t, nil)
	harness.StartN(t, 1, srv.URL(), func(c *gateway.Config) { c.JetStream.Partitions = 2 })

	cfg := harness.Config(t)
	cfg.NATS.URL, cfg.JetStream.Partitions = srv.URL(), 4
	err := startExpectingFailure(t, cfg)
	if !errors.Is(err, gateway.ErrPartitions) || !strings.Contains(err.Error(), "jetstream.partitions 4") ||
		!strings.Contains(err.Error(), "data uses 2") {
		t.Fatalf("mismatch: %v", err)
	}
	t.Logf("refused: %v", err)
	js := partitionJS(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{subjects.MegaphoneStreamOf(3, 4), subjects.PipeStreamOf(3, 4)} {
		if _, err := js.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("refused gateway left stream %s: %v", name, err)
		}
	}
	harness.StartN(t, 1, srv.URL(), func(c *gateway.Config) { c.JetStream.Partitions = 2 })

	// A cluster that ran before the count was recorded.
	old := natstest.RunServer(t, nil)
	ojs := partitionJS(t, old.URL())
	if _, err := ojs.CreateStream(ctx, jetstream.StreamConfig{Name: subjects.MegaphoneStream, Subjects: []string{subjects.MegaphoneEventsAll()}}); err != nil {
		t.Fatal(err)
	}
	cfg = harness.Config(t)
	cfg.NATS.URL, cfg.JetStream.Partitions = old.URL(), 3
	if err := startExpectingFailure(t, cfg); !errors.Is(err, gateway.ErrPartitions) || !strings.Contains(err.Error(), "data uses 1") {
		t.Fatalf("unrecorded unpartitioned cluster: %v", err)
	}
}

// TestPartitionsConfigBounds: jetstream.partitions outside 1..64 stops
// start-up with an error naming the key.
func TestPartitionsConfigBounds(t *testing.T) {
	for _, n := range []int{0, -1, 65} {
		cfg := harness.Config(t)
		cfg.JetStream.Partitions = n
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "jetstream.partitions") {
			t.Errorf("partitions %d: %v", n, err)
		}
	}
	for _, args := range [][]string{{"--jetstream-partitions", "x"}, {"--jetstream-partitions", "100"}} {
		if _, _, err := gateway.LoadConfig(args); err == nil || !strings.Contains(err.Error(), "partitions") {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// TestPartitionsPlacement: with R3 on a 5-node cluster, the 5 partitions
// of the event and pipe streams are placed on more than 3 nodes, and their
// leaders, spread with leader step-downs where they crowd (as the README's
// Capacity section describes), lead from at least 4 of the 5 nodes.
func TestPartitionsPlacement(t *testing.T) {
	if testing.Short() {
		t.Skip("5-node cluster")
	}
	const k, nodes = 5, 5
	cluster := natstest.NewCluster(t, nodes)
	harness.StartN(t, 1, cluster.URLs(), func(c *gateway.Config) {
		c.JetStream.Replicas, c.JetStream.Partitions = 3, k
	})
	nc, err := nats.Connect(cluster.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var names []string
	for p := range k {
		names = append(names, subjects.MegaphoneStreamOf(p, k), subjects.PipeStreamOf(p, k))
	}
	hosts := map[string]int{}
	for _, pl := range placementOf(t, js, names) {
		for _, n := range pl.nodes {
			hosts[n]++
		}
	}
	t.Logf("replicas per node: %v", hosts)
	if len(hosts) <= 3 {
		t.Fatalf("%d streams of R3 placed on only %d nodes: %v", len(names), len(hosts), hosts)
	}
	t.Logf("leaders as elected: %v", leadersByNode(placementOf(t, js, names)))
	leaders := spreadLeaders(t, nc, js, names, nodes)
	t.Logf("leaders after spreading: %v", leaders)
	if len(leaders) < 4 {
		t.Fatalf("partition leaders on only %d of %d nodes: %v", len(leaders), nodes, leaders)
	}
}
