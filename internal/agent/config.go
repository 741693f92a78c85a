package agent

import (
	"errors"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/relay"
)

// EnvPrefix prefixes the agent's environment variables.
const EnvPrefix = "SWITCHBOARD_AGENT"

// AgentUpstream is the configuration of `agent upstream`.
type AgentUpstream struct {
	NATS config.NATS `mapstructure:"nats"`
	// Name and Target declare one upstream; Upstreams declares several
	// (name → base URL). Default none; at least one is required.
	Name      string            `mapstructure:"name"`
	Target    string            `mapstructure:"target"`
	Upstreams map[string]string `mapstructure:"upstreams"`
	// MaxConcurrent bounds requests served at once per upstream; more are
	// answered busy. Default relay.DefaultMaxConcurrent (256).
	MaxConcurrent int `mapstructure:"max_concurrent"`
	// MaxUpgraded bounds the upgraded connections (WebSockets) open at
	// once per upstream, apart from MaxConcurrent; more upgrade requests
	// are answered busy. Default relay.DefaultMaxUpgraded (1024).
	MaxUpgraded int             `mapstructure:"max_upgraded"`
	Log         config.Log      `mapstructure:"log"`
	Shutdown    config.Shutdown `mapstructure:"shutdown"`
}

// AgentClient is the configuration of `agent client`.
type AgentClient struct {
	NATS config.NATS `mapstructure:"nats"`
	// Listen is the local HTTP address whose requests are relayed.
	// Default "127.0.0.1:8081".
	Listen string `mapstructure:"listen"`
	// Upstream is the name every request is relayed to. Required.
	Upstream string `mapstructure:"upstream"`
	// AgentWait, AckTimeout and ResponseTimeout are the relay caller's
	// timeouts, with relay's keys and defaults (without the "relay."
	// prefix).
	AgentWait       time.Duration `mapstructure:"agent_wait"`
	AckTimeout      time.Duration `mapstructure:"ack_timeout"`
	ResponseTimeout time.Duration `mapstructure:"response_timeout"`
	// MaxUpgraded and UpgradeIdleTimeout bound the upgraded connections
	// (WebSockets), as the gateway's relay.max_upgraded and
	// relay.upgrade_idle_timeout.
	MaxUpgraded        int           `mapstructure:"max_upgraded"`
	UpgradeIdleTimeout time.Duration `mapstructure:"upgrade_idle_timeout"`
	// TrustedProxies lists the IP addresses and CIDR prefixes of proxies
	// whose X-Forwarded-For/-Host/-Proto are kept; from any other peer they
	// are replaced. Default empty: trust no one.
	TrustedProxies []string        `mapstructure:"trusted_proxies"`
	Log            config.Log      `mapstructure:"log"`
	Shutdown       config.Shutdown `mapstructure:"shutdown"`
}

func commonKeys() []config.Key {
	return append([]config.Key{
		{Name: "nats.url", Default: "nats://127.0.0.1:4222", Usage: "comma-separated NATS URLs to connect out to", Aliases: []string{"nats"}},
		{Name: "nats.creds", Default: "", Usage: "NATS credentials file"},
		{Name: "nats.token", Default: "", Usage: "NATS auth token"},
		{Name: "nats.user", Default: "", Usage: "NATS user"},
		{Name: "nats.password", Default: "", Usage: "NATS password"},
		{Name: "shutdown.grace", Default: 15 * time.Second, Usage: "bound on graceful shutdown (requests in flight finish)"},
	}, append(config.NATSTLSKeys(), config.LogKeys()...)...)
}

// UpstreamLoader returns the loader of `agent upstream`.
func UpstreamLoader() *config.Loader {
	keys := append(commonKeys(),
		config.Key{Name: "name", Default: "", Usage: "upstream name served (with --target)"},
		config.Key{Name: "target", Default: "", Usage: "base URL of the upstream, e.g. http://127.0.0.1:3000"},
		config.Key{Name: "upstreams", Default: map[string]string{}, Usage: "NAME=URL pairs, repeatable, for several upstreams in one agent", Aliases: []string{"upstream"}},
		config.Key{Name: "max_concurrent", Default: relay.DefaultMaxConcurrent, Usage: "requests served at once per upstream"},
		config.Key{Name: "max_upgraded", Default: relay.DefaultMaxUpgraded, Usage: "upgraded connections (WebSockets) open at once per upstream; more are answered busy"},
	)
	return &config.Loader{Name: "agent upstream", EnvPrefix: EnvPrefix, Keys: keys}
}

// ClientLoader returns the loader of `agent client`: its timeouts are the
// relay's caller keys without their "relay." prefix.
func ClientLoader() *config.Loader {
	keys := append(commonKeys(),
		config.Key{Name: "listen", Default: "127.0.0.1:8081", Usage: "local HTTP address whose requests are relayed"},
		config.Key{Name: "upstream", Default: "", Usage: "upstream name every request is relayed to"},
	)
	for _, k := range relay.Keys() {
		name := strings.TrimPrefix(k.Name, "relay.")
		switch name {
		case "agent_wait", "ack_timeout", "response_timeout", "max_upgraded", "upgrade_idle_timeout":
			k.Name = name
			keys = append(keys, k)
		}
	}
	keys = append(keys, config.Key{Name: "trusted_proxies", Default: []string{}, Usage: "IPs and CIDRs of proxies whose X-Forwarded-For/-Host/-Proto are kept; others' are replaced"})
	return &config.Loader{Name: "agent client", EnvPrefix: EnvPrefix, Keys: keys}
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
	var errs []error
	if (c.Name == "") != (c.Target == "") {
		errs = append(errs, errors.New(`invalid value for key "name"/"target": set both or neither`))
	}
	targets := c.Targets()
	if len(targets) == 0 {
		errs = append(errs, config.Invalid("upstreams", "no upstream configured (use --name and --target, or --upstream NAME=URL)"))
	}
	names := make([]string, 0, len(targets))
	for n := range targets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		u, err := url.Parse(targets[n])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, config.Invalid("upstreams", "target %q of %q is not an http(s) URL", targets[n], n))
		}
	}
	if c.MaxConcurrent < 1 {
		errs = append(errs, config.Invalid("max_concurrent", "%d must be >= 1", c.MaxConcurrent))
	}
	if c.MaxUpgraded < 1 {
		errs = append(errs, config.Invalid("max_upgraded", "%d must be >= 1", c.MaxUpgraded))
	}
	errs = append(errs, checkCommon(c.NATS, c.Log, c.Shutdown)...)
	return config.Join(errs...)
}

// Validate checks the client agent configuration, naming the bad key.
func (c *AgentClient) Validate() error {
	var errs []error
	if !config.ValidListen(c.Listen) {
		errs = append(errs, config.Invalid("listen", "%q is not host:port", c.Listen))
	}
	if c.Upstream == "" {
		errs = append(errs, config.Invalid("upstream", "required"))
	}
	for k, d := range map[string]time.Duration{"agent_wait": c.AgentWait, "ack_timeout": c.AckTimeout, "response_timeout": c.ResponseTimeout} {
		if d <= 0 {
			errs = append(errs, config.Invalid(k, "%s must be > 0", d))
		}
	}
	if c.MaxUpgraded < 1 {
		errs = append(errs, config.Invalid("max_upgraded", "%d must be >= 1", c.MaxUpgraded))
	}
	if c.UpgradeIdleTimeout < 0 {
		errs = append(errs, config.Invalid("upgrade_idle_timeout", "%s must be >= 0", c.UpgradeIdleTimeout))
	}
	if bad := config.BadProxy(c.TrustedProxies); bad != "" {
		errs = append(errs, config.Invalid("trusted_proxies", "%q is not an IP address or CIDR prefix", bad))
	}
	errs = append(errs, checkCommon(c.NATS, c.Log, c.Shutdown)...)
	return config.Join(errs...)
}

func checkCommon(n config.NATS, l config.Log, s config.Shutdown) []error {
	var errs []error
	if strings.TrimSpace(n.URL) == "" {
		errs = append(errs, config.Invalid("nats.url", "required"))
	}
	errs = append(errs, n.ValidateTLS())
	errs = append(errs, l.Validate())
	if s.Grace <= 0 {
		errs = append(errs, config.Invalid("shutdown.grace", "%s must be > 0", s.Grace))
	}
	return errs
}
