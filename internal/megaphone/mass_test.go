package megaphone_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natstest"
)

// killedReadersBound is how long a gateway may take to notice that
// thousands of parked readers' clients vanished at once and to free what
// they held (README, Megaphone "Tests"): their claims released and the
// goroutines of their releases gone. Disconnect is seen at once by the
// gateway's epoll set (a parked poll has no goroutine), so the time is the
// gateway working through the releases, not a timer.
const killedReadersBound = 30 * time.Second

// TestReadersHalfKilled opens 5,000 readers (MEGAPHONE_MASS_READERS
// changes it) on a gateway in a child process, cuts half of the clients at
// once with a TCP reset, and checks that parked readers hold no goroutine
// each, and within killedReadersBound that the gateway counts only the
// other half as open with no goroutine left over, that a cut reader's
// channel takes a new reader at once (its claim is free) while a live one
// still answers 409, that the surviving readers still receive events (some
// of them sent bytes on their parked poll), and that a gateway shutdown
// ends every surviving poll with the last chunk and closes it.
func TestReadersHalfKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("5,000 connections")
	}
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("MEGAPHONE_MASS_READERS")); err == nil && v > 0 {
		n = v
	}
	if lim := openFileLimit(); lim > 0 && lim < n+1000 {
		// Go raises the soft limit to the hard one at start-up; a machine
		// whose hard limit is lower gets a smaller test, said in the log.
		n = max(100, lim-1000)
		t.Logf("open-file limit %d: %d readers", lim, n)
	}
	child := startChildGateway(t)
	base := child.base
	u, _ := url.Parse(base)

	hc := benchClient(32)
	defer hc.CloseIdleConnections()
	addrs := make([]created, n)
	parallel(n, 32, func(_, i int) {
		resp, err := hc.Post(base+"/create", "application/json", nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&addrs[i]); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("create = %d, %v", resp.StatusCode, err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	conns := make([]*rawPoll, n)
	parallel(n, 32, func(_, i int) {
		p, status, err := openRawPoll(u.Host, addrs[i].ConsumerAddress)
		if err != nil || status != http.StatusOK {
			t.Errorf("reader %d: status %d, %v", i, status, err)
			if p != nil {
				p.conn.Close()
			}
			return
		}
		conns[i] = p
	})
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.conn.Close()
			}
		}
	}()
	if t.Failed() {
		t.FailNow()
	}
	natstest.Eventually(t, time.Minute, func() error {
		if got := int(metric(t, base, "megaphone_open_readers")); got != n {
			return fmt.Errorf("%d of %d readers open", got, n)
		}
		return nil
	})
	before := metric(t, base, "go_goroutines")
	if before > float64(n/10+200) {
		t.Errorf("%v goroutines with %d parked readers: a goroutine per reader?", before, n)
	}
	// Bytes from a client on its parked poll (a pipelined request, say)
	// are dropped; the poll goes on.
	for i := 1; i < min(n, 41); i += 4 {
		if _, err := conns[i].conn.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
	}

	// Cut every even reader at once: RST, no FIN, as a client whose
	// process died or whose network vanished behind a NAT that resets.
	cut := time.Now()
	for i := 0; i < n; i += 2 {
		_ = conns[i].conn.(*net.TCPConn).SetLinger(0)
		_ = conns[i].conn.Close()
		conns[i] = nil
	}
	live := n / 2
	natstest.Eventually(t, killedReadersBound, func() error {
		if got := int(metric(t, base, "megaphone_open_readers")); got != live {
			return fmt.Errorf("%d readers open, want %d", got, live)
		}
		if got := metric(t, base, "go_goroutines"); got > before {
			return fmt.Errorf("%v goroutines, want <= %v (before the cut)", got, before)
		}
		return nil
	})
	t.Logf("%d of %d readers cut: open readers and goroutines (%v before) back in %v",
		n-live, n, before, time.Since(cut).Round(time.Millisecond))

	// A cut reader's claim is free: a new reader is taken at once. A live
	// reader's channel still refuses a second one.
	for i := 0; i < min(n, 400); i += 2 {
		p, status, err := openRawPoll(u.Host, addrs[i].ConsumerAddress)
		if err != nil || status != http.StatusOK {
			t.Fatalf("new reader on cut channel %d: status %d, %v", i, status, err)
		}
		p.conn.Close()
		p, status, err = openRawPoll(u.Host, addrs[i+1].ConsumerAddress)
		if err != nil || status != http.StatusConflict {
			t.Fatalf("second reader on live channel %d: status %d, %v", i+1, status, err)
		}
		p.conn.Close()
	}

	// The survivors still get their events.
	for i := 1; i < min(n, 41); i += 2 {
		r := do(t, "POST", base+"/write/"+addrs[i].ProducerAddress+"/s", "application/json", fmt.Sprintf(`{"n":%d}`, i))
		if r.Status != http.StatusCreated {
			t.Fatalf("write %d = %d %s", i, r.Status, r.Body)
		}
		if err := conns[i].waitFor(fmt.Sprintf(`"n":%d`, i), 10*time.Second); err != nil {
			t.Fatalf("reader %d: %v", i, err)
		}
	}

	// Shutdown ends every surviving poll: the last chunk, then the
	// gateway closes the connection (it waits closeWait for the client to
	// close first; these clients do not).
	child.stdin.Close()
	stopped := time.Now()
	parallel(live, 32, func(_, j int) {
		i := 2*j + 1
		if err := conns[i].waitEnd(time.Minute); err != nil {
			t.Errorf("reader %d at shutdown: %v", i, err)
		}
	})
	t.Logf("shutdown ended %d parked polls in %v", live, time.Since(stopped).Round(time.Millisecond))
}

// waitEnd reads the poll's body until the last chunk and then end of file.
func (p *rawPoll) waitEnd(d time.Duration) error {
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	for {
		k, err := p.rd.Read(buf)
		seen.Write(buf[:k])
		if err != nil {
			if !bytes.HasSuffix(seen.Bytes(), []byte("0\r\n\r\n")) {
				return fmt.Errorf("%w after %q, without the last chunk", err, seen.String())
			}
			return nil
		}
	}
}

// rawPoll is a /read poll over a bare TCP connection: no goroutine per
// connection on the client side, so thousands fit in one test process.
type rawPoll struct {
	conn net.Conn
	rd   *bufio.Reader
}

// openRawPoll sends GET /read/{consumer} and reads the response head.
func openRawPoll(host, consumer string) (*rawPoll, int, error) {
	c, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		return nil, 0, err
	}
	p := &rawPoll{conn: c, rd: bufio.NewReaderSize(c, 512)}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET /read/%s HTTP/1.1\r\nHost: %s\r\n\r\n", consumer, host); err != nil {
		return p, 0, err
	}
	line, err := p.rd.ReadString('\n')
	if err != nil {
		return p, 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return p, 0, fmt.Errorf("status line %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	for { // the rest of the head
		l, err := p.rd.ReadString('\n')
		if err != nil {
			return p, status, err
		}
		if l == "\r\n" {
			return p, status, nil
		}
	}
}

// waitFor reads the poll's body until it contains want.
func (p *rawPoll) waitFor(want string, d time.Duration) error {
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	defer p.conn.SetReadDeadline(time.Time{})
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), want) {
		k, err := p.rd.Read(buf)
		seen.Write(buf[:k])
		if err != nil {
			return fmt.Errorf("%w after %q", err, seen.String())
		}
	}
	return nil
}
