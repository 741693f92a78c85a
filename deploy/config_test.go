package deploy

import (
	"io"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/agent"
	"github.com/switchboard/switchboard/internal/gateway"
)

// loadGateway loads a gateway YAML through the real loader and Validate,
// ignoring the process environment.
func loadGateway(t *testing.T, path string) *gateway.Config {
	t.Helper()
	l := gateway.Loader()
	l.Output = io.Discard
	l.Getenv = func(string) string { return "" }
	var c gateway.Config
	if _, err := l.Load([]string{"--config", path}, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &c
}

// TestGatewayExamplesLoad proves every example gateway config uses only
// real keys with valid values, and that the cluster config is fit for the
// 3-node cluster.
func TestGatewayExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("gateway/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no gateway examples: %v", err)
	}
	for _, f := range files {
		loadGateway(t, f)
	}
	c := loadGateway(t, "gateway/cluster.yaml")
	if c.JetStream.Replicas != 3 {
		t.Errorf("cluster.yaml: jetstream.replicas = %d, want 3", c.JetStream.Replicas)
	}
	if c.NATS.URL != "" || c.NATS.Password != "" {
		t.Errorf("cluster.yaml: nats.url and nats.password come from the environment, not the shared file")
	}
	if c.Listen != ":8080" {
		t.Errorf("cluster.yaml: listen = %q; the images, compose file and manifests expect :8080", c.Listen)
	}
	if c.Pipe.Timeout <= 0 {
		t.Errorf("cluster.yaml: pipe.timeout must be set below the load balancer's idle timeout")
	}
}

// TestAgentExamplesLoad proves the agent example config loads through the
// real `agent upstream` loader.
func TestAgentExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("agent/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no agent examples: %v", err)
	}
	for _, f := range files {
		l := agent.UpstreamLoader()
		l.Output = io.Discard
		l.Getenv = func(string) string { return "" }
		var c agent.AgentUpstream
		if _, err := l.Load([]string{"--config", f}, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, ok := c.Targets()["demo"]; !ok {
			t.Errorf("%s: serves %v, want the upstream demo of accounts.conf", f, c.Targets())
		}
	}
}

// TestYAMLWellFormed lints every YAML file under deploy/: it must parse,
// every document must be a mapping, and no mapping may repeat a key.
func TestYAMLWellFormed(t *testing.T) {
	files := filesUnder(t, ".", ".yaml", ".yml")
	if len(files) < 8 {
		t.Fatalf("found only %d YAML files: %v", len(files), files)
	}
	for _, f := range files {
		if len(yamlDocs(t, f)) == 0 {
			t.Errorf("%s: no document", f)
		}
	}
}

// TestShellScriptsParse runs `bash -n` on every script under deploy/.
func TestShellScriptsParse(t *testing.T) {
	files := filesUnder(t, ".", ".sh")
	if len(files) == 0 {
		t.Fatal("no scripts found")
	}
	for _, f := range files {
		if out, err := exec.Command("bash", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", f, err, out)
		}
	}
}

// shutdownGrace is the gateways' graceful-stop bound in the shared config.
func shutdownGrace(t *testing.T) time.Duration {
	return loadGateway(t, "gateway/cluster.yaml").Shutdown.Grace
}
