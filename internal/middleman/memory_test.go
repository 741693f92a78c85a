package middleman_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
)

// memClientEnv, when set ("addr key n"), turns the test binary into the
// client side of BenchmarkIdleConnMemory: it opens n authenticated
// connections, prints READY and holds them until stdin closes. Running the
// clients in another process keeps their memory (and fds) out of the
// measurement.
const memClientEnv = "SWITCHBOARD_MM_MEMCLIENTS"

// idleConnBudget is the goal per idle authenticated connection (issue
// #15), for the RSS growth as the OS reports it and for heap + stacks
// after a forced GC.
const idleConnBudget = 8 << 10

// BenchmarkIdleConnMemory measures the memory per idle authenticated
// connection on a gateway holding 10,000 of them (override the count with
// SWITCHBOARD_MM_CONNS): the process RSS growth 2 s after the last one
// opened, with no forced GC (what an operator sees), and heap + stacks
// after a forced GC. It fails when either is above 8 KiB. Run with
// -benchtime 1x.
func BenchmarkIdleConnMemory(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("SWITCHBOARD_MM_CONNS")); err == nil && v > 0 {
		n = v
	}
	raiseFDLimit(b)
	gw := harness.StartEmbedded(b, mmConfig(benchConfig))
	before, stack0, g0 := liveBytes()
	rss0 := residentBytes(b)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", memClientEnv, gw.Addr(), cliKey, n))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	start := time.Now()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY") {
		b.Fatalf("clients: %q %v", line, err)
	}
	connect := time.Since(start)
	time.Sleep(2 * time.Second) // as peerbench idle -settle: the RSS a quiet gateway keeps
	rssPer := float64(residentBytes(b)-rss0) / float64(n)
	after, stack1, g1 := liveBytes()
	per := float64(after-before) / float64(n)
	b.ReportMetric(rssPer, "rss-bytes/conn")
	b.ReportMetric(per, "bytes/conn")
	b.ReportMetric(float64(stack1-stack0)/float64(n), "stack-bytes/conn")
	b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/conn")
	b.ReportMetric(float64(n)/connect.Seconds(), "handshakes/s")
	b.ReportMetric(0, "ns/op")
	if per > idleConnBudget || rssPer > idleConnBudget {
		b.Errorf("per idle connection %.0f bytes of heap + stacks, %.0f bytes of RSS; budget %d", per, rssPer, idleConnBudget)
	}
}

// residentBytes is this process's RSS (VmRSS).
func residentBytes(tb testing.TB) int64 {
	tb.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc/self/status:", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kib << 10
		}
	}
	tb.Skip("no VmRSS")
	return 0
}

// liveBytes is the live heap plus goroutine stacks after a full GC, the
// stacks alone, and the goroutine count.
func liveBytes() (uint64, uint64, int) {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse, m.StackInuse, runtime.NumGoroutine()
}

// memClients is the child process of BenchmarkIdleConnMemory. Each client
// is a bare TCP connection speaking just enough WebSocket for the
// handshake, with no goroutine of its own.
func memClients(spec string) int {
	var addr, key string
	var n int
	if _, err := fmt.Sscan(spec, &addr, &key, &n); err != nil {
		fmt.Fprintln(os.Stderr, "memclients:", err)
		return 2
	}
	raiseFDLimit(nil)
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c, err := wsHandshake(addr, key)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "memclients:", firstErr)
		return 1
	}
	fmt.Println("READY", n)
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		_ = c.Close()
	}
	return 0
}

func wsHandshake(addr, key string) (net.Conn, error) {
	c, err := wsUpgrade(addr)
	if err != nil {
		return nil, err
	}
	// A masked text frame (zero mask key) holding the key.
	frame := append([]byte{0x81, 0x80 | byte(len(key)), 0, 0, 0, 0}, key...)
	if _, err := c.Write(frame); err != nil {
		return nil, err
	}
	for _, want := range []string{"MM OK", ""} {
		hdr := make([]byte, 2)
		if _, err := io.ReadFull(c, hdr); err != nil {
			return nil, err
		}
		payload := make([]byte, hdr[1]&0x7f)
		if _, err := io.ReadFull(c, payload); err != nil {
			return nil, err
		}
		if want != "" && string(payload) != want {
			return nil, fmt.Errorf("handshake answer %q", payload)
		}
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// wsUpgrade opens a WebSocket to addr's /mm by hand, up to the 101; the
// connection has a 60 s deadline.
func wsUpgrade(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	req := "GET /mm HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return nil, err
	}
	var resp []byte
	buf := make([]byte, 512)
	for !bytes.Contains(resp, []byte("\r\n\r\n")) {
		k, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		resp = append(resp, buf[:k]...)
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101")) {
		return nil, fmt.Errorf("upgrade: %q", resp)
	}
	return c, nil
}
