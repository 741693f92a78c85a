package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// dockerStages parses the Dockerfile's stages: name -> its lines.
func dockerStages(t *testing.T) (map[string][]string, map[string]string) {
	t.Helper()
	raw, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages, args := map[string][]string{}, map[string]string{}
	cur := ""
	for _, line := range strings.Split(strings.ReplaceAll(string(raw), "\\\n", " "), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch {
		case f[0] == "FROM" && len(f) == 4 && strings.EqualFold(f[2], "AS"):
			cur = f[3]
			stages[cur] = append(stages[cur], line)
		case f[0] == "ARG" && cur == "":
			if k, v, ok := strings.Cut(f[1], "="); ok {
				args[k] = v
			}
		case cur != "":
			stages[cur] = append(stages[cur], line)
		}
	}
	return stages, args
}

// TestDockerfile checks the images: multi-stage, static binaries, a
// distroless non-root runtime for each of gateway, agent and nats, and
// nats-server and Go at the versions of go.mod.
func TestDockerfile(t *testing.T) {
	stages, args := dockerStages(t)
	if want := goModVersion(t, "github.com/nats-io/nats-server/v2"); args["NATS_SERVER_VERSION"] != want {
		t.Errorf("Dockerfile NATS_SERVER_VERSION = %q, go.mod has %q", args["NATS_SERVER_VERSION"], want)
	}
	if goVer := goModVersion(t, "go"); !strings.HasPrefix(goVer, args["GO_VERSION"]+".") && goVer != args["GO_VERSION"] {
		t.Errorf("Dockerfile GO_VERSION = %q, go.mod says go %s", args["GO_VERSION"], goVer)
	}
	build := strings.Join(stages["build"], "\n")
	if !strings.Contains(build, "CGO_ENABLED=0") {
		t.Error("build stage does not set CGO_ENABLED=0")
	}
	for _, m := range regexp.MustCompile(`(?m)^COPY (\S+(?: \S+)*) \./?\S*$`).FindAllStringSubmatch(build, -1) {
		for _, src := range strings.Fields(m[1]) {
			if _, err := os.Stat(filepath.Join("..", src)); err != nil {
				t.Errorf("Dockerfile copies %s, which is not in the repository", src)
			}
		}
	}
	for _, name := range []string{"gateway", "agent", "nats"} {
		lines := stages[name]
		if len(lines) == 0 {
			t.Errorf("Dockerfile has no stage %q", name)
			continue
		}
		if !strings.Contains(lines[0], "distroless/static") {
			t.Errorf("stage %s runs on %q, want a distroless static image", name, lines[0])
		}
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "USER 65532") }) {
			t.Errorf("stage %s does not switch to the non-root user 65532", name)
		}
	}
	if _, err := os.Stat("docker/Dockerfile.dockerignore"); err != nil {
		t.Error("no docker/Dockerfile.dockerignore: state and data dirs would enter the build context")
	}
}

// checkBuild checks a compose build section against the Dockerfile.
func checkBuild(t *testing.T, svc string, s any, stages map[string][]string) {
	t.Helper()
	b := get(s, "build")
	if b == nil {
		return
	}
	if ctx := str(b, "context"); filepath.Clean(ctx) != ".." {
		t.Errorf("%s: build context %q, want the repository root ..", svc, ctx)
	}
	if df := str(b, "dockerfile"); df != "deploy/docker/Dockerfile" {
		t.Errorf("%s: dockerfile %q", svc, df)
	}
	target := str(b, "target")
	if stages[target] == nil {
		t.Errorf("%s: build target %q is not a Dockerfile stage", svc, target)
	}
	if img := str(s, "image"); img != "switchboard/"+target+":dev" {
		t.Errorf("%s: image %q, want switchboard/%s:dev (the kustomize image names)", svc, img, target)
	}
}

// hostMounts returns the host paths of a compose service's bind mounts.
func hostMounts(s any) map[string]string {
	out := map[string]string{}
	for _, v := range list(s, "volumes") {
		parts := strings.Split(fmt.Sprint(v), ":")
		if len(parts) >= 2 && strings.HasPrefix(parts[0], ".") {
			out[parts[0]] = parts[1]
		}
	}
	return out
}

// TestComposeConsistent checks docker-compose.yml against the files it
// shares: every variable nats.conf and haproxy.cfg read is set, every
// mounted file exists, builds use real Dockerfile stages, the gateways and
// agents reach all three nodes, and secrets come from env.example's names.
func TestComposeConsistent(t *testing.T) {
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	secrets := envExample(t)
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(string(raw), -1) {
		if _, ok := secrets[m[1]]; !ok {
			t.Errorf("docker-compose.yml interpolates ${%s}, which env.example does not list", m[1])
		}
	}
	stages, _ := dockerStages(t)
	services, _ := get(yamlDocs(t, "docker-compose.yml")[0], "services").(map[string]any)
	var nats, gateways []string
	for name, s := range services {
		checkBuild(t, name, s, stages)
		for host := range hostMounts(s) {
			if _, err := os.Stat(host); err != nil {
				t.Errorf("%s mounts %s, which does not exist", name, host)
			}
		}
		switch {
		case strings.HasPrefix(name, "nats-"):
			nats = append(nats, name)
		case strings.HasPrefix(name, "gateway-"):
			gateways = append(gateways, name)
		}
	}
	slices.Sort(nats)
	slices.Sort(gateways)
	if len(nats) != 3 || len(gateways) != 3 || services["lb"] == nil || services["agent-demo"] == nil {
		t.Fatalf("want nats-1..3, gateway-1..3, lb, agent-demo; have %v", sortedKeys(services))
	}
	for _, n := range nats {
		env := get(services[n], "environment")
		for _, v := range natsConfVars(t) {
			if get(env, v) == nil {
				t.Errorf("%s: nats.conf reads $%s, not set", n, v)
			}
		}
		if str(env, "NATS_SERVER_NAME") != n {
			t.Errorf("%s: NATS_SERVER_NAME %q", n, str(env, "NATS_SERVER_NAME"))
		}
		for _, peer := range nats {
			if !strings.Contains(str(env, "NATS_ROUTES"), "@"+peer+":") {
				t.Errorf("%s: NATS_ROUTES lacks %s", n, peer)
			}
		}
		if hostMounts(services[n])["./nats"] != "/etc/nats" {
			t.Errorf("%s: ./nats is not mounted at /etc/nats", n)
		}
	}
	for _, g := range gateways {
		s := services[g]
		for _, n := range nats {
			if !strings.Contains(str(s, "environment", "SWITCHBOARD_NATS_URL"), "nats://"+n+":4222") {
				t.Errorf("%s: SWITCHBOARD_NATS_URL lacks %s", g, n)
			}
		}
		if str(s, "environment", "SWITCHBOARD_NATS_USER") != "gateway" {
			t.Errorf("%s: NATS user must be gateway", g)
		}
		if hostMounts(s)["./gateway/cluster.yaml"] == "" {
			t.Errorf("%s does not mount ./gateway/cluster.yaml", g)
		}
		if d, err := time.ParseDuration(str(s, "stop_grace_period")); err != nil || d <= shutdownGrace(t) {
			t.Errorf("%s: stop_grace_period %q must exceed shutdown.grace %s", g, str(s, "stop_grace_period"), shutdownGrace(t))
		}
	}
	lbEnv := get(services["lb"], "environment")
	for _, v := range haproxyVars(t) {
		if get(lbEnv, v) == nil {
			t.Errorf("lb: haproxy.cfg reads ${%s}, not set", v)
		}
	}
	for i, g := range gateways {
		if got := str(lbEnv, fmt.Sprintf("SB_GW%d_ADDR", i+1)); got != g+":8080" {
			t.Errorf("lb: SB_GW%d_ADDR = %q, want %s:8080", i+1, got, g)
		}
	}
	if hostMounts(services["lb"])["./lb/haproxy.cfg"] == "" {
		t.Error("lb does not mount ./lb/haproxy.cfg")
	}
	agent := services["agent-demo"]
	if _, ok := agentUpstreams[str(agent, "environment", "SWITCHBOARD_AGENT_NATS_USER")]; !ok {
		t.Errorf("agent-demo: NATS user %q is not an agent user of accounts.conf", str(agent, "environment", "SWITCHBOARD_AGENT_NATS_USER"))
	}
	if hostMounts(agent)["./agent/upstream.yaml"] == "" {
		t.Error("agent-demo does not mount ./agent/upstream.yaml")
	}
}
