package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/integration/harness"
	"github.com/switchboard/switchboard/internal/agent"
)

// socket.io through the relay: an npm socket.io server run with node
// behind `agent upstream`, and socket.io-client (transports: websocket
// only, so every step goes over the relayed upgraded connection) run with
// node as the caller, through the gateway's /relay/{name}/ and through
// `agent client`. The packages are installed with npm once into
// $TMPDIR/switchboard-test-socketio-<version> and kept between runs. The
// test skips when node or npm is missing or the install fails, unless
// SB_REQUIRE_NPM=1 (CI) makes that a failure.

const socketIOVersion = "4.8.1"

// socketIOServerJS is the app: it prints {"port":N} once listening;
// "say" is answered with "said" to the sender, "echo" is acknowledged
// with the message and the transport the server sees, "shout" is
// broadcast to every client as "shouted".
const socketIOServerJS = `
const http = require('http');
const { Server } = require('socket.io');
const srv = http.createServer();
const io = new Server(srv, { transports: ['websocket'] });
io.on('connection', (socket) => {
  socket.on('say', (msg) => socket.emit('said', msg));
  socket.on('echo', (msg, ack) => ack({ msg, transport: socket.conn.transport.name }));
  socket.on('shout', (msg) => io.emit('shouted', msg));
});
srv.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: srv.address().port }));
});
`

// socketIOClientJS runs the caller's scenario with two clients on
// argv[2] (base URL) and argv[3] (socket.io path) and prints one JSON
// line per step: connect, emit, acknowledgement, broadcast to both; then
// "waiting" and, once both were disconnected and reconnected (the test
// restarts the agent meanwhile), the acknowledgement and broadcast again,
// then "done". Any failure prints {"step":"error",...} and exits 1.
const socketIOClientJS = `
const { io } = require('socket.io-client');
const [url, path] = process.argv.slice(2);
const out = (o) => console.log(JSON.stringify(o));
const fail = (e) => { out({ step: 'error', error: String(e && e.stack || e) }); process.exit(1); };
setTimeout(() => fail('scenario took longer than 90 s'), 90000).unref();
const opts = { path, transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 500, timeout: 5000 };
const once = (s, ev) => new Promise((res) => s.once(ev, res));
const within = (p, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('timed out: ' + what)), 15000))]);
async function broadcast(a, b, msg) {
  const got = [once(a, 'shouted'), once(b, 'shouted')];
  a.emit('shout', msg);
  const [x, y] = await within(Promise.all(got), 'broadcast');
  if (x !== msg || y !== msg) throw new Error('broadcast got ' + x + ', ' + y);
}
async function ack(s, msg) {
  const r = await s.timeout(10000).emitWithAck('echo', msg);
  if (JSON.stringify(r.msg) !== JSON.stringify(msg)) throw new Error('ack got ' + JSON.stringify(r));
  return r.transport;
}
(async () => {
  const a = io(url, opts), b = io(url, opts);
  for (const s of [a, b]) {
    s.on('connect_error', (e) => out({ step: 'connect_error', error: e.message }));
    s.on('disconnect', (why) => out({ step: 'disconnect', reason: why }));
  }
  await within(Promise.all([once(a, 'connect'), once(b, 'connect')]), 'connect');
  out({ step: 'connected', transport: a.io.engine.transport.name });
  const said = once(a, 'said');
  a.emit('say', 'hello');
  if (await within(said, 'emit') !== 'hello') throw new Error('say');
  out({ step: 'emit' });
  out({ step: 'ack', transport: await ack(a, { n: 1, s: 'ü€' }) });
  await broadcast(a, b, 'to all');
  out({ step: 'broadcast' });
  const back = [a, b].map((s) => once(s, 'disconnect').then(() => once(s, 'connect')));
  out({ step: 'waiting' });
  await Promise.race([Promise.all(back), new Promise((_, rej) => setTimeout(() => rej(new Error('no reconnect within 60 s')), 60000))]);
  out({ step: 'reconnected', transport: b.io.engine.transport.name });
  out({ step: 'ack', transport: await ack(b, [2, 'again']) });
  await broadcast(b, a, 'after restart');
  out({ step: 'broadcast' });
  for (const s of [a, b]) { s.off('disconnect'); s.close(); }
  out({ step: 'done' });
})().catch(fail);
`

var socketIOInstall struct {
	once sync.Once
	dir  string // node_modules holding socket.io and socket.io-client
	err  error
}

// socketIOModules installs (once per process, and once per machine as
// long as $TMPDIR keeps it) socket.io and socket.io-client and returns
// their node_modules directory. It skips the test when node or npm is
// missing or the install fails, or fails it with SB_REQUIRE_NPM=1.
func socketIOModules(t *testing.T) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("SB_REQUIRE_NPM") == "1" {
			t.Fatalf(format+" (SB_REQUIRE_NPM=1)", args...)
		}
		t.Skipf(format, args...)
	}
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing("%s not installed: no socket.io test", bin)
		}
	}
	socketIOInstall.once.Do(func() {
		dir := filepath.Join(os.TempDir(), "switchboard-test-socketio-"+socketIOVersion)
		mods := filepath.Join(dir, "node_modules")
		socketIOInstall.dir = mods
		have := func() bool {
			for _, p := range []string{"socket.io", "socket.io-client"} {
				if _, err := os.Stat(filepath.Join(mods, p, "package.json")); err != nil {
					return false
				}
			}
			return true
		}
		if have() {
			return
		}
		// Install next to it and rename, so that a run interrupted or
		// racing another leaves no half-installed directory behind.
		tmp, err := os.MkdirTemp(os.TempDir(), "switchboard-test-socketio-install-")
		if err != nil {
			socketIOInstall.err = err
			return
		}
		defer os.RemoveAll(tmp)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", tmp, "--no-audit", "--no-fund", "--no-save",
			"socket.io@"+socketIOVersion, "socket.io-client@"+socketIOVersion)
		if out, err := cmd.CombinedOutput(); err != nil {
			socketIOInstall.err = fmt.Errorf("npm install socket.io: %v\n%s", err, out)
			return
		}
		if err := os.Rename(tmp, dir); err != nil && !have() {
			socketIOInstall.err = err
		}
	})
	if socketIOInstall.err != nil {
		missing("%v", socketIOInstall.err)
	}
	return socketIOInstall.dir
}

// nodeProc is a node process whose stdout lines arrive on lines.
type nodeProc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr lockedBuffer
}

// startNode runs script (written to a temp file) with args, modules on
// NODE_PATH, and stops it at the end of the test.
func startNode(t *testing.T, modules, script string, args ...string) *nodeProc {
	t.Helper()
	file := filepath.Join(t.TempDir(), "main.js")
	if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &nodeProc{lines: make(chan string, 64)}
	p.cmd = exec.Command("node", append([]string{file}, args...)...)
	p.cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-read
		_ = p.cmd.Wait()
	})
	return p
}

// next returns the next stdout line decoded, failing the test after
// timeout or at the end of the output.
func (p *nodeProc) next(t *testing.T, timeout time.Duration) map[string]any {
	t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			t.Fatalf("node exited early; stderr:\n%s", p.stderr.tail(8192))
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("node printed %q", line)
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("node said nothing for %s; stderr:\n%s", timeout, p.stderr.tail(8192))
	}
	return nil
}

// TestRelaySocketIO: a socket.io app behind `agent upstream`, clients
// using WebSocket only, through the gateway and through `agent client`:
// connect, emit, acknowledgement, broadcast to two clients, and
// reconnection after the agent restarts.
func TestRelaySocketIO(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node")
	}
	modules := socketIOModules(t)
	app := startNode(t, modules, socketIOServerJS)
	port := app.next(t, 30*time.Second)["port"]
	p, ok := port.(float64)
	if !ok || p <= 0 {
		t.Fatalf("socket.io server printed port %v", port)
	}
	target := "http://127.0.0.1:" + strconv.Itoa(int(p))

	gw := harness.StartEmbedded(t, relayConfig)
	cfg := agentConfig(t, gw.EmbeddedURL(), map[string]string{"sio": target})
	current := startAgent(t, cfg)
	// restart shuts the agent down gracefully and starts a new one, which
	// lives until the end of the whole test.
	parent := t
	restart := func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := current.Shutdown(ctx); err != nil {
			t.Fatalf("agent shutdown: %v", err)
		}
		u, err := agent.StartUpstream(ctx, cfg, harness.Logger(t).With("agent", "upstream"))
		if err != nil {
			t.Fatalf("restart agent: %v", err)
		}
		parent.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = u.Shutdown(sctx)
		})
		current = u
	}
	cl := startAgentClient(t, gw.EmbeddedURL(), "sio")

	t.Run("gateway", func(t *testing.T) {
		socketIOScenario(t, modules, gw.URL(), "/relay/sio/socket.io/", restart)
	})
	t.Run("agent-client", func(t *testing.T) {
		socketIOScenario(t, modules, "http://"+cl.Addr(), "/socket.io/", restart)
	})
}

// socketIOScenario runs the client script against url and path, restarts
// the agent when the clients wait for it, and checks every step.
func socketIOScenario(t *testing.T, modules, url, path string, restart func(*testing.T)) {
	c := startNode(t, modules, socketIOClientJS, url, path)
	want := []string{"connected", "emit", "ack", "broadcast", "waiting", "reconnected", "ack", "broadcast", "done"}
	disconnects := 0
	for i := 0; i < len(want); {
		m := c.next(t, 60*time.Second)
		step, _ := m["step"].(string)
		switch step {
		case "error":
			t.Fatalf("socket.io client: %v", m["error"])
		case "connect_error":
			// Reconnection attempts while no agent serves the upstream.
			t.Logf("connect_error (while the agent restarts): %v", m["error"])
			continue
		case "disconnect":
			disconnects++
			t.Logf("client disconnected: %v", m["reason"])
			continue
		}
		if step != want[i] {
			t.Fatalf("step %d: %v, want %q", i, m, want[i])
		}
		if tr, ok := m["transport"]; ok && tr != "websocket" {
			t.Fatalf("step %s over transport %v, want websocket", step, tr)
		}
		if step == "waiting" {
			restart(t)
		}
		i++
	}
	if disconnects != 2 {
		t.Fatalf("%d disconnects seen, want 2 (both clients, once)", disconnects)
	}
}
