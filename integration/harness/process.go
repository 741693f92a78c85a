package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/natstest"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// moduleRoot finds the directory holding go.mod, starting from this file.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary builds (once per test binary) the command cmd ("gateway" or
// "agent") and returns its path.
func Binary(t testing.TB, cmd string) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "switchboard-bin")
		if buildErr != nil {
			return
		}
		for _, c := range []string{"gateway", "agent"} {
			build := exec.Command("go", "build", "-o", filepath.Join(buildDir, c), "./cmd/"+c)
			build.Dir = moduleRoot()
			out, err := build.CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", c, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("harness: %v", buildErr)
	}
	return filepath.Join(buildDir, cmd)
}

// Process is a gateway running as a real OS process.
type Process struct {
	cmd     *exec.Cmd
	url     string
	exited  chan struct{}
	exitErr error
}

var listenRe = regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)

// StartProcess starts the gateway binary with args plus a random loopback
// listener and waits until it is ready. It is killed at the end of the test.
func StartProcess(t testing.TB, args ...string) *Process {
	t.Helper()
	bin := Binary(t, "gateway")
	args = append([]string{"--listen", "127.0.0.1:0", "--log-level", "info"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = moduleRoot()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("harness: start gateway process: %v", err)
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if m := listenRe.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { p.exitErr = cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.Kill)
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.exited:
		t.Fatalf("harness: gateway process exited: %v", p.exitErr)
	case <-time.After(60 * time.Second):
		t.Fatal("harness: gateway process did not start listening")
	}
	WaitReady(t, p.url)
	return p
}

// URL is the process's base URL.
func (p *Process) URL() string { return p.url }

// Kill ends the process with SIGKILL: no graceful shutdown at all.
func (p *Process) Kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Stop sends SIGTERM and waits (up to 30 s, then SIGKILL) for the exit,
// returning its error: nil for a clean, graceful stop.
func (p *Process) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.exitErr
	case <-time.After(30 * time.Second):
		p.Kill()
		return fmt.Errorf("harness: gateway did not stop within 30s")
	}
}

// Exited is closed when the process has exited; [Process.ExitErr] then
// says how.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr is the process's exit error (nil for exit code 0). Call it only
// after [Process.Exited] is closed.
func (p *Process) ExitErr() error { return p.exitErr }

// WaitGone polls until base no longer answers.
func WaitGone(t testing.TB, base string) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		if IsReady(base) == nil {
			return fmt.Errorf("%s still ready", base)
		}
		return nil
	})
}
