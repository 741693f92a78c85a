package config

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
)

// AgentEnvPrefix prefixes the agent's environment variables.
const AgentEnvPrefix = "SWITCHBOARD_AGENT"

// AgentUpstream is the configuration of `agent upstream`.
type AgentUpstream struct {
	NATS NATS `mapstructure:"nats"`
	// Name and Target declare one upstream; Upstreams declares several.
	Name      string            `mapstructure:"name"`
	Target    string            `mapstructure:"target"`
	Upstreams map[string]string `mapstructure:"upstreams"`
	// MaxConcurrent bounds requests served at once per upstream.
	MaxConcurrent int      `mapstructure:"max_concurrent"`
	Log           Log      `mapstructure:"log"`
	Shutdown      Shutdown `mapstructure:"shutdown"`
}

// AgentClient is the configuration of `agent client`.
type AgentClient struct {
	NATS     NATS   `mapstructure:"nats"`
	Listen   string `mapstructure:"listen"`
	Upstream string `mapstructure:"upstream"`
	// AgentWait, AckTimeout and ResponseTimeout as for the gateway's relay.
	AgentWait       time.Duration `mapstructure:"agent_wait"`
	AckTimeout      time.Duration `mapstructure:"ack_timeout"`
	ResponseTimeout time.Duration `mapstructure:"response_timeout"`
	// TrustedProxies lists the IP addresses and CIDR prefixes of proxies
	// whose X-Forwarded-For/-Host/-Proto are kept; from any other peer they
	// are replaced. Default empty: trust no one.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	Log            Log      `mapstructure:"log"`
	Shutdown       Shutdown `mapstructure:"shutdown"`
}

func agentCommonKeys() []Key {
	return []Key{
		{Name: "nats.url", Default: "nats://127.0.0.1:4222", Usage: "comma-separated NATS URLs to connect out to", Aliases: []string{"nats"}},
		{Name: "nats.creds", Default: "", Usage: "NATS credentials file"},
		{Name: "nats.token", Default: "", Usage: "NATS auth token"},
		{Name: "nats.user", Default: "", Usage: "NATS user"},
		{Name: "nats.password", Default: "", Usage: "NATS password"},
		{Name: "log.level", Default: "info", Usage: "log level: debug, info, warn, error"},
		{Name: "log.format", Default: "text", Usage: "log format: text or json"},
		{Name: "shutdown.grace", Default: 15 * time.Second, Usage: "bound on graceful shutdown (requests in flight finish)"},
	}
}

// AgentUpstreamLoader returns the loader of `agent upstream`.
func AgentUpstreamLoader() *Loader {
	keys := append(agentCommonKeys(),
		Key{Name: "name", Default: "", Usage: "upstream name served (with --target)"},
		Key{Name: "target", Default: "", Usage: "base URL of the upstream, e.g. http://127.0.0.1:3000"},
		Key{Name: "upstreams", Default: map[string]string{}, Usage: "NAME=URL pairs, repeatable, for several upstreams in one agent", Aliases: []string{"upstream"}},
		Key{Name: "max_concurrent", Default: 256, Usage: "requests served at once per upstream"},
	)
	return &Loader{Name: "agent upstream", EnvPrefix: AgentEnvPrefix, Keys: keys}
}

// AgentClientLoader returns the loader of `agent client`.
func AgentClientLoader() *Loader {
	keys := append(agentCommonKeys(),
		Key{Name: "listen", Default: "127.0.0.1:8081", Usage: "local HTTP address whose requests are relayed"},
		Key{Name: "upstream", Default: "", Usage: "upstream name every request is relayed to"},
		Key{Name: "agent_wait", Default: 5 * time.Second, Usage: "wait for an agent of the upstream to appear before 503"},
		Key{Name: "ack_timeout", Default: 2 * time.Second, Usage: "wait for the chosen agent to accept a request"},
		Key{Name: "response_timeout", Default: 30 * time.Second, Usage: "wait for the upstream's response headers before 504"},
		Key{Name: "trusted_proxies", Default: []string{}, Usage: "IPs and CIDRs of proxies whose X-Forwarded-For/-Host/-Proto are kept; others' are replaced"},
	)
	return &Loader{Name: "agent client", EnvPrefix: AgentEnvPrefix, Keys: keys}
}

// Targets returns every upstream name → target URL, from name/target and
// upstreams together.
func (c *AgentUpstream) Targets() map[string]string {
	out := make(map[string]string, len(c.Upstreams)+1)
	for k, v := range c.Upstreams {
		out[k] = v
	}
	if c.Name != "" {
		out[c.Name] = c.Target
	}
	return out
}

// Validate checks the upstream agent configuration, naming the bad key.
func (c *AgentUpstream) Validate() error {
	var errs []string
	if (c.Name == "") != (c.Target == "") {
		errs = append(errs, `invalid value for key "name"/"target": set both or neither`)
	}
	targets := c.Targets()
	if len(targets) == 0 {
		errs = append(errs, `invalid value for key "upstreams": no upstream configured (use --name and --target, or --upstream NAME=URL)`)
	}
	names := make([]string, 0, len(targets))
	for n := range targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		u, err := url.Parse(targets[n])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Sprintf("invalid value for key \"upstreams\": target %q of %q is not an http(s) URL", targets[n], n))
		}
	}
	if c.MaxConcurrent < 1 {
		errs = append(errs, fmt.Sprintf("invalid value for key \"max_concurrent\": %d must be >= 1", c.MaxConcurrent))
	}
	errs = append(errs, checkCommon(c.NATS, c.Log, c.Shutdown)...)
	return joinErrs(errs)
}

// Validate checks the client agent configuration, naming the bad key.
func (c *AgentClient) Validate() error {
	var errs []string
	if !validListen(c.Listen) {
		errs = append(errs, fmt.Sprintf("invalid value for key \"listen\": %q is not host:port", c.Listen))
	}
	if c.Upstream == "" {
		errs = append(errs, `invalid value for key "upstream": required`)
	}
	for k, d := range map[string]time.Duration{"agent_wait": c.AgentWait, "ack_timeout": c.AckTimeout, "response_timeout": c.ResponseTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Sprintf("invalid value for key %q: %s must be > 0", k, d))
		}
	}
	if bad := badProxy(c.TrustedProxies); bad != "" {
		errs = append(errs, fmt.Sprintf("invalid value for key \"trusted_proxies\": %q is not an IP address or CIDR prefix", bad))
	}
	errs = append(errs, checkCommon(c.NATS, c.Log, c.Shutdown)...)
	return joinErrs(errs)
}

func checkCommon(n NATS, l Log, s Shutdown) []string {
	var errs []string
	if strings.TrimSpace(n.URL) == "" {
		errs = append(errs, `invalid value for key "nats.url": required`)
	}
	if l.Level != "debug" && l.Level != "info" && l.Level != "warn" && l.Level != "error" {
		errs = append(errs, fmt.Sprintf("invalid value for key \"log.level\": %q is not debug, info, warn or error", l.Level))
	}
	if l.Format != "text" && l.Format != "json" {
		errs = append(errs, fmt.Sprintf("invalid value for key \"log.format\": %q is not text or json", l.Format))
	}
	if s.Grace <= 0 {
		errs = append(errs, fmt.Sprintf("invalid value for key \"shutdown.grace\": %s must be > 0", s.Grace))
	}
	return errs
}

func joinErrs(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	return fmt.Errorf("config: %s", strings.Join(errs, "; "))
}
