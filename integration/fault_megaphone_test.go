package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natstest"
	"github.com/switchboard/switchboard/internal/subjects"
)

// TestFaultMegaphoneNoLossNodeAndGatewayKilled kills NATS node 2 (and
// restarts it) and SIGKILLs a gateway (replaced by a new one) while a
// writer and a reconnecting reader run through the load balancer. It proves
// that every write acknowledged with 201 is read at least once: lost = 0.
func TestFaultMegaphoneNoLossNodeAndGatewayKilled(t *testing.T) {
	faultMegaphoneNoLoss(t, 1)
}

// TestFaultMegaphoneNoLossPartitions is the same run with
// jetstream.partitions = 3 on the 3-node cluster; the node stopped is the
// leader of the channel's event-stream partition.
func TestFaultMegaphoneNoLossPartitions(t *testing.T) {
	faultMegaphoneNoLoss(t, 3)
}

func faultMegaphoneNoLoss(t *testing.T, partitions int) {
	fc := newFaultCluster(t, 3, "--megaphone-poll-duration", "2s", "--megaphone-channel-ttl", "60s",
		"--jetstream-partitions", strconv.Itoa(partitions))
	client := &http.Client{Timeout: 30 * time.Second}

	var created struct{ ConsumerAddress, ProducerAddress string }
	natstest.Eventually(t, 20*time.Second, func() error {
		resp, err := client.Post(fc.lb.URL()+"/create", "application/json", nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("create: %d", resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(&created)
	})

	victim := 1
	if partitions > 1 {
		victim = partitionLeader(t, fc, created.ConsumerAddress, partitions)
	}

	const total = 300
	attempts := 0
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ledger := startMegaphoneReader(ctx, client, fc.lb.URL(), created.ConsumerAddress)

	// Writer: each message is retried through the balancer until a 201.
	write := func(seq int) {
		body, _ := json.Marshal(map[string]int{"seq": seq})
		for ctx.Err() == nil {
			attempts++
			resp, err := client.Post(fc.lb.URL()+"/write/"+created.ProducerAddress+"/s", "application/json", bytes.NewReader(body))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					ledger.ack(seq)
					return
				}
			}
		}
	}
	for seq := 0; seq < total; seq++ {
		switch seq {
		case 60:
			fc.nats.Stop(victim)
		case 120:
			fc.replaceGateway(0)
		case 180:
			fc.nats.Restart(victim)
		case 240:
			fc.replaceGateway(2)
		}
		write(seq)
	}

	acked, received, dups := ledger.waitAllRead(t, 90*time.Second)
	t.Logf("megaphone fault run (partitions %d, node %d stopped): sent=%d attempts=%d acked=%d received=%d duplicates=%d lost=0",
		partitions, victim, total, attempts, acked, received, dups)
	if acked != total {
		t.Fatalf("only %d of %d writes were acknowledged", acked, total)
	}
}

// partitionLeader returns the index of the node that leads the event
// stream partition of the channel at consumer address addr.
func partitionLeader(t *testing.T, fc *faultCluster, addr string, k int) int {
	t.Helper()
	js := partitionJS(t, fc.allNATSURLs())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name := subjects.MegaphoneStreamOf(subjects.MegaphonePartition(strings.Split(addr, ".")[1], k), k)
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	for i, srv := range fc.nats.Servers {
		if srv.Name() == info.Cluster.Leader {
			t.Logf("channel's partition %s is led by %s", name, srv.Name())
			return i
		}
	}
	t.Fatalf("stream %s: leader %q is no node of the cluster", name, info.Cluster.Leader)
	return 0
}
