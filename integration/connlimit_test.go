package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/gateway"
	"github.com/switchboard/switchboard/internal/natstest"
)

// TestConnectionCap: a gateway holds at most http.max_conns client
// connections, a parked Megaphone poll (a hijacked connection) included;
// the next one gets 503 with Retry-After and is closed, without changing
// what the others are served; once a connection closes, even a hijacked
// one, a new one is served again.
func TestConnectionCap(t *testing.T) {
	gw := harness.StartEmbedded(t, func(c *gateway.Config) { c.HTTP.MaxConns = 3 })
	base := gw.URL()
	// One kept-alive connection for the API calls and /metrics: 1 of 3.
	api := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
	defer api.CloseIdleConnections()
	producer, consumer := megaphoneChannel(t, api, base)

	// A parked poll: 2 of 3.
	poll := rawRequest(t, gw.Addr(), "GET /read/"+consumer+" HTTP/1.1\r\nHost: x\r\n\r\n")
	defer poll.Close()
	if status := readStatus(t, poll.br); status != http.StatusOK {
		t.Fatalf("poll: status %d", status)
	}
	// A kept-alive connection: 3 of 3.
	idle := rawRequest(t, gw.Addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	defer idle.Close()
	if status := readStatus(t, idle.br); status != http.StatusOK {
		t.Fatalf("healthz: status %d", status)
	}
	waitMetric(t, api, base, "switchboard_http_connections", 3)

	// The fourth is turned away at once.
	over := rawRequest(t, gw.Addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	defer over.Close()
	resp, err := http.ReadResponse(over.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), `"UNAVAILABLE"`) {
		t.Fatalf("over the cap: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if _, err := over.br.ReadByte(); err != io.EOF {
		t.Fatalf("over the cap: connection not closed (%v)", err)
	}
	waitMetric(t, api, base, "switchboard_http_connections_refused_total", 1)

	// The poll is served as before.
	megaphoneWrite(t, api, base, producer, "after-refusal")
	if line := readChunkLine(t, poll.br); !strings.Contains(line, "after-refusal") {
		t.Fatalf("poll read %q", line)
	}

	// The client of the poll goes away: its hijacked connection is
	// released, and a new connection is served.
	poll.Close()
	waitMetric(t, api, base, "switchboard_http_connections", 2)
	again := rawRequest(t, gw.Addr(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	defer again.Close()
	if status := readStatus(t, again.br); status != http.StatusOK {
		t.Fatalf("after a connection closed: status %d", status)
	}
}

type rawConn struct {
	net.Conn
	br *bufio.Reader
}

// rawRequest dials addr and sends req as it is.
func rawRequest(t testing.TB, addr, req string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// readStatus reads a response's status line and headers.
func readStatus(t testing.TB, br *bufio.Reader) int {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		t.Fatalf("status line %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if h == "\r\n" {
			return status
		}
	}
}

// readChunkLine reads chunks of a chunked body until one holds a
// non-empty line other than a keepalive, and returns it.
func readChunkLine(t testing.TB, br *bufio.Reader) string {
	t.Helper()
	for {
		size, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n == 0 {
			t.Fatalf("chunk size %q (%v)", size, err)
		}
		p := make([]byte, n+2)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatal(err)
		}
		if line := strings.TrimSpace(string(p)); line != "" && strings.Contains(line, "{") {
			return line
		}
	}
}

// waitMetric waits until the gateway's sample reads want.
func waitMetric(t testing.TB, c *http.Client, base, sample string, want float64) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		resp, err := c.Get(base + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
				if got, _ := strconv.ParseFloat(v, 64); got != want {
					return fmt.Errorf("%s = %v, want %v", sample, got, want)
				}
				return nil
			}
		}
		return fmt.Errorf("%s not found", sample)
	})
}
