package gateway

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/config"
)

func load(t *testing.T, env map[string]string, args ...string) (*Config, error) {
	t.Helper()
	l := Loader()
	l.Getenv = func(k string) string { return env[k] }
	var c Config
	if _, err := l.Load(args, &c); err != nil {
		return nil, err
	}
	return &c, c.Validate()
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8080" || c.DataDir != "./data" || c.Embedded.Listen != "127.0.0.1:4222" ||
		c.JetStream.Replicas != 1 || c.Megaphone.Agent != "main" || c.Megaphone.BufferSize != 100 ||
		c.Megaphone.WriteWait != 10*time.Second || c.Megaphone.PollDuration != 20*time.Second ||
		c.Megaphone.ChannelTTL != time.Minute || c.Middleman.MaxFrame != 1<<20 ||
		c.Middleman.RequestTimeout != 30*time.Second || c.Relay.AgentWait != 5*time.Second ||
		c.Shutdown.Grace != 15*time.Second || c.Pipe.Timeout != 0 || c.Log.Level != "info" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "listen: ':1'\nmegaphone:\n  buffer_size: 7\n  write_wait: 3s\nmiddleman:\n  service_keys: [s1, s2]\nrelay:\n  api_keys:\n    MyAPI: secret\n")
	env := map[string]string{"SWITCHBOARD_LISTEN": ":2", "SWITCHBOARD_MEGAPHONE_BUFFER_SIZE": "8", "SWITCHBOARD_MIDDLEMAN_CLIENT_KEYS": "c1, c2"}
	c, err := load(t, env, "--config", file, "--listen", ":3")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":3" {
		t.Errorf("flag should win: listen = %q", c.Listen)
	}
	if c.Megaphone.BufferSize != 8 {
		t.Errorf("env should beat file: buffer_size = %d", c.Megaphone.BufferSize)
	}
	if c.Megaphone.WriteWait != 3*time.Second {
		t.Errorf("file should beat default: write_wait = %s", c.Megaphone.WriteWait)
	}
	if !reflect.DeepEqual(c.Middleman.ServiceKeys, []string{"s1", "s2"}) || !reflect.DeepEqual(c.Middleman.ClientKeys, []string{"c1", "c2"}) {
		t.Errorf("lists: %q %q", c.Middleman.ServiceKeys, c.Middleman.ClientKeys)
	}
	if c.Relay.APIKeys["MyAPI"] != "secret" {
		t.Errorf("map keys must keep their case: %v", c.Relay.APIKeys)
	}
}

func TestAliases(t *testing.T) {
	c, err := load(t, nil, "--replicas", "3", "--mm-service-keys", "a,b", "--pipe-timeout", "2s", "--middleman-max-frame", "64KiB")
	if err != nil {
		t.Fatal(err)
	}
	if c.JetStream.Replicas != 3 || len(c.Middleman.ServiceKeys) != 2 || c.Pipe.Timeout != 2*time.Second || c.Middleman.MaxFrame != 64<<10 {
		t.Fatalf("aliases not applied: %+v", c)
	}
}

func TestEmbeddedAgentsFromFile(t *testing.T) {
	file := writeFile(t, "embedded:\n  agents:\n    - user: a1\n      password: p\n      upstreams: [api, web]\n")
	c, err := load(t, nil, "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Embedded.Agents) != 1 || c.Embedded.Agents[0].User != "a1" || len(c.Embedded.Agents[0].Upstreams) != 2 {
		t.Fatalf("agents: %+v", c.Embedded.Agents)
	}
}

func TestBadConfigNamesKey(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		file string
		args []string
		key  string
	}{
		{name: "unknown file key", file: "listen: ':1'\nbogus: 1\n", key: "bogus"},
		{name: "unknown nested key", file: "megaphone:\n  nope: 1\n", key: "megaphone.nope"},
		{name: "listen nonsense", args: []string{"--listen", "nonsense"}, key: "listen"},
		{name: "negative duration flag", args: []string{"--megaphone-write-wait", "-1s"}, key: "megaphone.write_wait"},
		{name: "negative duration env", env: map[string]string{"SWITCHBOARD_MEGAPHONE_CHANNEL_TTL": "-5s"}, key: "megaphone.channel_ttl"},
		{name: "bad duration in file", file: "relay:\n  agent_wait: soon\n", key: "relay.agent_wait"},
		{name: "bad int env", env: map[string]string{"SWITCHBOARD_MEGAPHONE_BUFFER_SIZE": "lots"}, key: "megaphone.buffer_size"},
		{name: "bad size", env: map[string]string{"SWITCHBOARD_MIDDLEMAN_MAX_FRAME": "huge"}, key: "middleman.max_frame"},
		{name: "bad replicas", args: []string{"--replicas", "0"}, key: "jetstream.replicas"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, key: "log.level"},
		{name: "max_conns below -1", args: []string{"--http-max-conns", "-2"}, key: "http.max_conns"},
		{name: "bad api keys env", env: map[string]string{"SWITCHBOARD_RELAY_API_KEYS": "novalue"}, key: "relay.api_keys"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeFile(t, tc.file)}, args...)
			}
			_, err := load(t, tc.env, args...)
			if err == nil {
				t.Fatal("bad config accepted")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("message is not one line: %q", msg)
			}
			if !strings.Contains(msg, tc.key) && !strings.Contains(msg, (config.Key{Name: tc.key}).FlagName()) {
				t.Errorf("message %q does not name %q", msg, tc.key)
			}
		})
	}
}

func TestEveryKeyHasFlagEnvAndUsage(t *testing.T) {
	fs := Loader().FlagSet()
	for _, k := range Keys() {
		if k.Usage == "" {
			t.Errorf("key %q has no usage", k.Name)
		}
		if k.FileOnly() {
			continue
		}
		if fs.Lookup(k.FlagName()) == nil {
			t.Errorf("key %q has no flag --%s", k.Name, k.FlagName())
		}
	}
	if got := (config.Key{Name: "middleman.service_keys"}).EnvName(EnvPrefix); got != "SWITCHBOARD_MIDDLEMAN_SERVICE_KEYS" {
		t.Errorf("env name %q", got)
	}
}
