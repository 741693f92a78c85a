package main

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestExposedEmbeddedServerRefused: an embedded server on a non-loopback
// address without agent users stops start-up, naming the keys to change.
func TestExposedEmbeddedServerRefused(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", ":4222"} {
		// A gateway that starts instead is killed after 20 s.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, binary, "--listen", "127.0.0.1:0", "--embedded-listen", listen, "--data-dir", t.TempDir())
		out, err := cmd.CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Fatalf("--embedded-listen %s: err %v, want exit 2; output %s", listen, err, out)
		}
		first := strings.SplitN(string(out), "\n", 2)[0]
		for _, key := range []string{"embedded.listen", "embedded.agents", "embedded.allow_anonymous"} {
			if !strings.Contains(first, key) {
				t.Errorf("--embedded-listen %s: %q does not name %s", listen, first, key)
			}
		}
	}
}
