package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natstest"
)

// mpLedger counts what a fault test's Megaphone writer got acknowledged
// and what its reader received, by the seq carried in each event body.
type mpLedger struct {
	mu       sync.Mutex
	acked    map[int]bool
	received map[int]int
	polls    int
	pollErrs map[string]int
	allRead  chan struct{}
	done     chan struct{}
}

// startMegaphoneReader runs the Megaphone client loop against base: a new
// poll after every poll and after every error (gateway killed, 409 while a
// dead reader's claim expires, NATS failover), until waitAllRead or ctx.
func startMegaphoneReader(ctx context.Context, client *http.Client, base, consumer string) *mpLedger {
	l := &mpLedger{acked: map[int]bool{}, received: map[int]int{}, pollErrs: map[string]int{},
		allRead: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for ctx.Err() == nil {
			select {
			case <-l.allRead:
				return
			default:
			}
			l.poll(ctx, client, base+"/read/"+consumer)
		}
	}()
	return l
}

func (l *mpLedger) poll(ctx context.Context, client *http.Client, url string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	l.mu.Lock()
	l.polls++
	l.mu.Unlock()
	if err != nil || resp.StatusCode != http.StatusOK {
		e := statusErr(resp, err)
		if ctx.Err() != nil {
			return
		}
		l.fail(e.Error())
		select { // client back-off
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev struct {
			Body struct{ Seq int } `json:"body"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			l.mu.Lock()
			l.received[ev.Body.Seq]++
			l.mu.Unlock()
		}
	}
	if sc.Err() != nil && ctx.Err() == nil {
		l.fail("cut: " + sc.Err().Error())
	}
}

func (l *mpLedger) fail(reason string) {
	l.mu.Lock()
	l.pollErrs[reason]++
	l.mu.Unlock()
}

// ack records a write answered 201.
func (l *mpLedger) ack(seq int) {
	l.mu.Lock()
	l.acked[seq] = true
	l.mu.Unlock()
}

// waitAllRead waits until every acknowledged seq was received, stops the
// reader and returns the counts.
func (l *mpLedger) waitAllRead(t *testing.T, timeout time.Duration) (acked, received, dups int) {
	t.Helper()
	natstest.Eventually(t, timeout, func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		for seq := range l.acked {
			if l.received[seq] == 0 {
				return fmt.Errorf("acked %d, still missing e.g. seq %d", len(l.acked), seq)
			}
		}
		return nil
	})
	close(l.allRead)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.received {
		dups += n - 1
	}
	return len(l.acked), len(l.received), dups
}

// pollStats reports the reader's polls and failed polls by reason.
func (l *mpLedger) pollStats() (int, map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.polls, l.pollErrs
}
