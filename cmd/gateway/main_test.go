package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natstest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gateway-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gateway")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build gateway: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestVersionAndHelp(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "switchboard gateway ") {
		t.Fatalf("version: %v %q", err, out)
	}
	out, err = exec.Command(binary, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, flag := range []string{"--listen", "--nats-url", "--data-dir", "--embedded-listen", "--replicas", "--jetstream-replicas",
		"--megaphone-agent", "--mm-service-keys", "--middleman-service-keys", "--pipe-timeout", "--relay-api-keys", "--shutdown-grace"} {
		if !strings.Contains(string(out), flag+" ") {
			t.Errorf("--help does not list %s", flag)
		}
	}
}

// TestBadConfigExits proves that bad configuration stops start-up with a
// non-zero exit and one line naming the key.
func TestBadConfigExits(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(file, []byte("listen: ':0'\nmegaphone:\n  bufer_size: 3\n"), 0o600)
	cases := []struct {
		args []string
		env  string
		key  string
	}{
		{args: []string{"--config", file}, key: "megaphone.bufer_size"},
		{args: []string{"--listen", "nonsense"}, key: "listen"},
		{args: []string{"--megaphone-write-wait", "-3s"}, key: "megaphone.write_wait"},
		{args: []string{"--relay-agent-wait", "-1s"}, key: "relay.agent_wait"},
		{env: "SWITCHBOARD_MEGAPHONE_POLL_DURATION=forever", key: "megaphone.poll_duration"},
		{args: []string{"--no-such-flag"}, key: "no-such-flag"},
	}
	for _, c := range cases {
		cmd := exec.Command(binary, c.args...)
		cmd.Env = append(os.Environ(), c.env)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Errorf("%v %s: err %v, want non-zero exit", c.args, c.env, err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if !strings.Contains(lines[0], c.key) {
			t.Errorf("%v %s: first line %q does not name %q", c.args, c.env, lines[0], c.key)
		}
	}
}

var addrRe = regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)

// startBinary runs the gateway in embedded mode on random ports and returns
// its base URL once /readyz answers 200.
func startBinary(t *testing.T, dataDir string) (*exec.Cmd, string, <-chan error) {
	t.Helper()
	cmd := exec.Command(binary, "--listen", "127.0.0.1:0", "--embedded-listen", "-1", "--data-dir", dataDir)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-exited:
		t.Fatalf("gateway exited early: %v", err)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("gateway did not log its address")
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	natstest.Eventually(t, 15*time.Second, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return cmd, base, exited
}

// TestEmbeddedStartStopRestart proves `gateway` with no NATS URL becomes
// ready, exits 0 on SIGINT, and starts again on the same data dir.
func TestEmbeddedStartStopRestart(t *testing.T) {
	dir := t.TempDir()
	for round := 0; round < 2; round++ {
		cmd, _, exited := startBinary(t, dir)
		cmd.Process.Signal(syscall.SIGINT)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("round %d: exit after SIGINT: %v", round, err)
			}
		case <-ctx.Done():
			cmd.Process.Kill()
			t.Fatalf("round %d: no exit after SIGINT", round)
		}
		cancel()
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		t.Fatalf("data dir not kept: %v", err)
	}
}
