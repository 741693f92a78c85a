package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var smokeSeq atomic.Uint64

// Smoke proves that the gateway at base still serves after whatever a test
// threw at it: a Megaphone channel is created, written and read back, and
// a pipe hands a body from a producer to a consumer.
func Smoke(t testing.TB, base string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := smokeMegaphone(ctx, base); err != nil {
		t.Fatalf("smoke: megaphone: %v", err)
	}
	if err := smokePipe(ctx, base); err != nil {
		t.Fatalf("smoke: pipe: %v", err)
	}
}

func smokeMegaphone(ctx context.Context, base string) error {
	var ch struct{ ProducerAddress, ConsumerAddress string }
	if err := smokeDo(ctx, "POST", base+"/create", "", nil, http.StatusOK, &ch); err != nil {
		return err
	}
	if err := smokeDo(ctx, "POST", base+"/write/"+ch.ProducerAddress+"/smoke", "application/json", strings.NewReader(`"alive"`), http.StatusCreated, nil); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, "GET", base+"/read/"+ch.ConsumerAddress, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("read: %d", resp.StatusCode)
	}
	line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	var ev struct {
		SID  string `json:"sid"`
		Body string `json:"body"`
	}
	if err := json.Unmarshal(line, &ev); err != nil || ev.SID != "smoke" || ev.Body != "alive" {
		return fmt.Errorf("read: event %q: %v", line, err)
	}
	return nil
}

func smokePipe(ctx context.Context, base string) error {
	u := fmt.Sprintf("%s/channels/smoke/c%d", base, smokeSeq.Add(1))
	produced := make(chan error, 1)
	go func() {
		produced <- smokeDo(ctx, "POST", u, "text/plain", strings.NewReader("handed over"), http.StatusOK, nil)
	}()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != "handed over" {
		return fmt.Errorf("consumer: %d %q %v", resp.StatusCode, body, err)
	}
	return <-produced
}

func smokeDo(ctx context.Context, method, url, ctype string, body io.Reader, status int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != status {
		return fmt.Errorf("%s %.80s: %d %s", method, url, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}
