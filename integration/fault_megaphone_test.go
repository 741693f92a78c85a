package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natstest"
)

// TestFaultMegaphoneNoLossNodeAndGatewayKilled kills NATS node 2 (and
// restarts it) and SIGKILLs a gateway (replaced by a new one) while a
// writer and a reconnecting reader run through the load balancer. It proves
// that every write acknowledged with 201 is read at least once: lost = 0.
func TestFaultMegaphoneNoLossNodeAndGatewayKilled(t *testing.T) {
	fc := newFaultCluster(t, 3, "--megaphone-poll-duration", "2s", "--megaphone-channel-ttl", "60s")
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
			fc.nats.Stop(1)
		case 120:
			fc.replaceGateway(0)
		case 180:
			fc.nats.Restart(1)
		case 240:
			fc.replaceGateway(2)
		}
		write(seq)
	}

	acked, received, dups := ledger.waitAllRead(t, 90*time.Second)
	t.Logf("megaphone fault run: sent=%d attempts=%d acked=%d received=%d duplicates=%d lost=0",
		total, attempts, acked, received, dups)
	if acked != total {
		t.Fatalf("only %d of %d writes were acknowledged", acked, total)
	}
}
