package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
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
	var (
		mu       sync.Mutex
		acked    = map[int]bool{}
		received = map[int]int{}
		attempts int
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Reader: the Megaphone client loop, reconnecting after every poll and
	// after every error (gateway killed, 409 while a dead reader's claim
	// expires, NATS failover).
	readerDone := make(chan struct{})
	allRead := make(chan struct{})
	go func() {
		defer close(readerDone)
		for ctx.Err() == nil {
			select {
			case <-allRead:
				return
			default:
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fc.lb.URL()+"/read/"+created.ConsumerAddress, nil)
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			if resp.StatusCode != 200 {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond): // client back-off
				}
				continue
			}
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var ev struct {
					Body struct{ Seq int } `json:"body"`
				}
				if json.Unmarshal(sc.Bytes(), &ev) == nil {
					mu.Lock()
					received[ev.Body.Seq]++
					mu.Unlock()
				}
			}
			resp.Body.Close()
		}
	}()

	// Writer: each message is retried through the balancer until a 201.
	write := func(seq int) {
		body, _ := json.Marshal(map[string]int{"seq": seq})
		for ctx.Err() == nil {
			mu.Lock()
			attempts++
			mu.Unlock()
			resp, err := client.Post(fc.lb.URL()+"/write/"+created.ProducerAddress+"/s", "application/json", bytes.NewReader(body))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					mu.Lock()
					acked[seq] = true
					mu.Unlock()
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

	natstest.Eventually(t, 90*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for seq := range acked {
			if received[seq] == 0 {
				return fmt.Errorf("acked %d, still missing e.g. seq %d", len(acked), seq)
			}
		}
		return nil
	})
	close(allRead)
	cancel()
	<-readerDone

	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, n := range received {
		if n > 1 {
			dups += n - 1
		}
	}
	t.Logf("megaphone fault run: sent=%d attempts=%d acked=%d received=%d duplicates=%d lost=0",
		total, attempts, len(acked), len(received), dups)
	if len(acked) != total {
		t.Fatalf("only %d of %d writes were acknowledged", len(acked), total)
	}
}
