package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natstest"
)

// opStats counts one kind of client operation, each retried through the
// balancer up to rollingAttempts times.
type opStats struct {
	mu          sync.Mutex
	ops, ok     int
	retries     int            // attempts beyond the first, over all operations
	maxAttempts int            // of one operation
	failed      []string       // operations that did not succeed within the attempts
	errs        map[string]int // what the retried attempts saw
}

func (s *opStats) record(attempts int, attemptErrs []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops++
	s.retries += attempts - 1
	s.maxAttempts = max(s.maxAttempts, attempts)
	if s.errs == nil {
		s.errs = map[string]int{}
	}
	for _, e := range attemptErrs {
		s.errs[e]++
	}
	if err != nil {
		s.failed = append(s.failed, err.Error())
		return
	}
	s.ok++
}

func (s *opStats) succeeded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok
}

func (s *opStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	kinds := make([]string, 0, len(s.errs))
	for k, n := range s.errs {
		kinds = append(kinds, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("ops=%d ok=%d failed=%d retries=%d max-attempts=%d retried-on=[%s]",
		s.ops, s.ok, len(s.failed), s.retries, s.maxAttempts, strings.Join(kinds, ", "))
}

// rollingAttempts bounds the attempts of one client operation: "a few".
const rollingAttempts = 5

// retryOp runs try until it succeeds or rollingAttempts attempts failed,
// with a 100 ms back-off, and returns the attempts and the attempts' errors.
func retryOp(ctx context.Context, try func() error) (int, []string, error) {
	var errs []string
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil {
			return attempt, errs, nil
		}
		errs = append(errs, err.Error())
		if attempt == rollingAttempts || ctx.Err() != nil {
			return attempt, errs, fmt.Errorf("%d attempts, last: %v", attempt, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// statusErr names a failed attempt by its status (or "conn" for a
// connection error), so the log shows what retries were for.
// statusErr names a failed attempt by its status and error envelope (or
// "conn" for a connection error), so the log shows what retries were for.
// It reads and closes the response body.
func statusErr(resp *http.Response, err error) error {
	if err != nil {
		return fmt.Errorf("conn")
	}
	defer resp.Body.Close()
	var env struct{ Code, Message string }
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if json.Unmarshal(b, &env) == nil && env.Code != "" {
		return fmt.Errorf("%d %s: %s", resp.StatusCode, env.Code, env.Message)
	}
	return fmt.Errorf("%d", resp.StatusCode)
}

// openStreams returns the gateway's non-zero switchboard_open_streams
// series ("kind=n ..."), read from its /metrics.
func openStreams(ctx context.Context, client *http.Client, base string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := client.Do(req)
	if err != nil {
		return "metrics: " + err.Error()
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, `switchboard_open_streams{kind="`)
		if !ok {
			continue
		}
		kind, value, _ := strings.Cut(rest, `"} `)
		if value != "0" {
			out = append(out, kind+"="+value)
		}
	}
	return strings.Join(out, " ")
}

// TestFaultRollingRestartUnderLoad restarts every one of 3 gateways in
// turn, gracefully (out of the balancer, SIGTERM, a new gateway in its
// place), while a bounded load runs through the balancer: Megaphone writes
// with a reconnecting reader, pipe hand-offs and relay requests (agent on
// the cluster). It proves that every gateway stops cleanly (exit 0), that
// clients see no error beyond retries (every operation succeeds within 5
// attempts), that every Megaphone write acknowledged with 201 is read
// (lost = 0), every pipe hand-off delivers its bytes (SHA-256), and every
// relay request ends with 200.
func TestFaultRollingRestartUnderLoad(t *testing.T) {
	fc := newFaultCluster(t, 3, "--megaphone-poll-duration", "2s", "--megaphone-channel-ttl", "60s", "--pipe-timeout", "10s")
	client := faultClient(t)
	var hitsMu sync.Mutex
	hits := map[string]int{} // upstream executions per relay request
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hitsMu.Lock()
		hits[r.URL.RawQuery]++
		hitsMu.Unlock()
		time.Sleep(30 * time.Millisecond) // requests are in flight at every SIGTERM
		fmt.Fprint(w, "pong "+r.URL.RawQuery)
	}))
	t.Cleanup(upstream.Close)
	startAgent(t, agentConfig(t, fc.allNATSURLs(), map[string]string{"roll": upstream.URL}))

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	lb := fc.lb.URL()

	var created struct{ ConsumerAddress, ProducerAddress string }
	natstest.Eventually(t, 20*time.Second, func() error {
		resp, err := client.Post(lb+"/create", "application/json", nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("create: %d", resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(&created)
	})
	relayOnce := func(q string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, lb+"/relay/roll/x?"+q, nil)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			return statusErr(resp, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return fmt.Errorf("conn")
		}
		if string(b) != "pong "+q {
			return fmt.Errorf("wrong answer %q", b)
		}
		return nil
	}
	natstest.Eventually(t, 20*time.Second, func() error { return relayOnce("warmup") })

	var (
		mega, pipes, relays opStats
		mu                  sync.Mutex
	)
	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return ctx.Err() != nil
		}
	}
	var wg sync.WaitGroup
	loop := func(limit int, pause time.Duration, op func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < limit && !stopped(); i++ {
				op(i)
				time.Sleep(pause)
			}
		}()
	}

	// Megaphone reader: the client loop, until everything acknowledged was
	// read.
	ledger := startMegaphoneReader(ctx, client, lb, created.ConsumerAddress)
	// Megaphone writer: each write retried until a 201.
	loop(2000, 20*time.Millisecond, func(seq int) {
		body, _ := json.Marshal(map[string]int{"seq": seq})
		attempts, errs, err := retryOp(ctx, func() error {
			resp, err := client.Post(lb+"/write/"+created.ProducerAddress+"/s", "application/json", bytes.NewReader(body))
			if err != nil || resp.StatusCode != http.StatusCreated {
				return statusErr(resp, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ledger.ack(seq)
			return nil
		})
		mega.record(attempts, errs, err)
	})
	// Pipe hand-offs of 256 KiB, a new channel each: one worker's
	// consumers wait 150 ms for their producer, the other's producers for
	// their consumer, so parties are waiting at every SIGTERM.
	const handOffSize = 256 << 10
	var pipeConsumerRetries, pipeProducerRetries int
	for w, delay := range []time.Duration{150 * time.Millisecond, -150 * time.Millisecond} {
		loop(500, 10*time.Millisecond, func(i int) {
			h := handOff(ctx, client, lb, "roll", fmt.Sprintf("w%d-h%d", w, i), handOffSize, rollingAttempts, delay)
			pipes.record(max(h.consumerAttempts, h.producerAttempts), h.errs, h.err)
			mu.Lock()
			pipeConsumerRetries += h.consumerAttempts - 1
			pipeProducerRetries += h.producerAttempts - 1
			mu.Unlock()
		})
	}
	// Relay requests from 3 callers, each retried until a 200.
	for c := 0; c < 3; c++ {
		loop(5000, 10*time.Millisecond, func(i int) {
			q := fmt.Sprintf("c=%d&i=%d", c, i)
			attempts, errs, err := retryOp(ctx, func() error { return relayOnce(q) })
			relays.record(attempts, errs, err)
		})
	}

	// progress waits until every kind of operation made progress and at
	// least one Megaphone poll length passed (the reader's poll moves).
	progress := func(what string) {
		t.Helper()
		since := time.Now()
		m, p, r := mega.succeeded(), pipes.succeeded(), relays.succeeded()
		natstest.Eventually(t, 30*time.Second, func() error {
			if mega.succeeded() < m+10 || pipes.succeeded() < p+5 || relays.succeeded() < r+10 || time.Since(since) < 2500*time.Millisecond {
				return fmt.Errorf("%s: load not progressing: megaphone %s; pipe %s; relay %s", what, &mega, &pipes, &relays)
			}
			return nil
		})
	}
	progress("before the restarts")
	var restarts []string
	for i := range fc.gws {
		start := time.Now()
		var open string
		err := fc.restartGateway(i, func(url string) { open = openStreams(ctx, client, url) })
		if err != nil {
			t.Errorf("gateway %d did not stop cleanly: %v", i, err)
		}
		restarts = append(restarts, fmt.Sprintf("gateway %d: open streams at SIGTERM {%s}, replaced in %s", i, open, time.Since(start).Round(time.Millisecond)))
		progress(fmt.Sprintf("after restarting gateway %d", i))
	}
	close(stop)
	wg.Wait()

	acked, received, dups := ledger.waitAllRead(t, 60*time.Second)
	polls, pollErrs := ledger.pollStats()
	cancel()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("rolling restart (out of the balancer → SIGTERM → exit 0 → replacement ready): %s", strings.Join(restarts, "; "))
	t.Logf("megaphone: writes %s; acked=%d received=%d duplicates=%d lost=0; reader polls=%d failed polls=%v", &mega, acked, received, dups, polls, pollErrs)
	t.Logf("pipe: hand-offs of %d KiB %s (consumer retries=%d producer retries=%d); lost=0", handOffSize>>10, &pipes, pipeConsumerRetries, pipeProducerRetries)
	hitsMu.Lock()
	dupExec := 0
	for _, n := range hits {
		dupExec += n - 1
	}
	hitsMu.Unlock()
	t.Logf("relay: requests %s; upstream executed a request more than once %d times", &relays, dupExec)
	if dupExec > 0 {
		// A graceful stop drains relayed requests instead of cutting them,
		// so no client has a reason to retry one the upstream already ran.
		t.Errorf("%d relayed requests ran twice on the upstream: a graceful stop cut them", dupExec)
	}
	for name, s := range map[string]*opStats{"megaphone write": &mega, "pipe hand-off": &pipes, "relay request": &relays} {
		if len(s.failed) > 0 {
			t.Errorf("%d %s operations failed beyond %d attempts: %s", len(s.failed), name, rollingAttempts, strings.Join(s.failed, "; "))
		}
	}
}
