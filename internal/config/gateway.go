package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// GatewayEnvPrefix prefixes the gateway's environment variables.
const GatewayEnvPrefix = "SWITCHBOARD"

// Gateway is the gateway binary's configuration.
type Gateway struct {
	// Listen is the public HTTP address. Default ":8080".
	Listen string `mapstructure:"listen"`
	// DataDir is the embedded JetStream store directory. Default "./data".
	DataDir   string    `mapstructure:"data_dir"`
	NATS      NATS      `mapstructure:"nats"`
	Embedded  Embedded  `mapstructure:"embedded"`
	JetStream JetStream `mapstructure:"jetstream"`
	Megaphone Megaphone `mapstructure:"megaphone"`
	Pipe      Pipe      `mapstructure:"pipe"`
	Middleman Middleman `mapstructure:"middleman"`
	Relay     Relay     `mapstructure:"relay"`
	HTTP      HTTP      `mapstructure:"http"`
	Log       Log       `mapstructure:"log"`
	Shutdown  Shutdown  `mapstructure:"shutdown"`
}

// NATS holds client connection settings for an external cluster.
type NATS struct {
	// URL is a comma-separated list of server URLs; empty = embedded server.
	URL      string `mapstructure:"url"`
	Creds    string `mapstructure:"creds"`
	Token    string `mapstructure:"token"`
	User     string `mapstructure:"user"`
	Password string `mapstructure:"password"`
}

// Embedded configures the in-process nats-server used when NATS.URL is empty.
type Embedded struct {
	// Listen is the client address agents connect to; "-1" or ":0" = a
	// random port on 127.0.0.1.
	Listen string `mapstructure:"listen"`
	// Agents, when non-empty, turns on auth: each agent user may only serve
	// its upstreams.
	Agents []AgentUser `mapstructure:"agents"`
	// AllowAnonymous lets Listen be a non-loopback address while Agents is
	// empty, i.e. gives anyone who reaches it full access. Default false:
	// such a configuration is refused.
	AllowAnonymous bool `mapstructure:"allow_anonymous"`
}

// AgentUser is one agent account of the embedded server.
type AgentUser struct {
	User      string   `mapstructure:"user"`
	Password  string   `mapstructure:"password"`
	Upstreams []string `mapstructure:"upstreams"`
}

// JetStream configures the streams and buckets the gateway creates.
type JetStream struct {
	// Replicas is the replication factor (1..5). Default 1.
	Replicas int `mapstructure:"replicas"`
}

// Megaphone configures buffered channels.
type Megaphone struct {
	Agent        string        `mapstructure:"agent"`
	BufferSize   int           `mapstructure:"buffer_size"`
	WriteWait    time.Duration `mapstructure:"write_wait"`
	PollDuration time.Duration `mapstructure:"poll_duration"`
	ChannelTTL   time.Duration `mapstructure:"channel_ttl"`
	AdminToken   string        `mapstructure:"admin_token"`
	WebhookURL   string        `mapstructure:"webhook_url"`
}

// Pipe configures rendezvous pipes.
type Pipe struct {
	// Timeout bounds the wait for a partner; 0 = none.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Middleman configures the WebSocket protocol.
type Middleman struct {
	ServiceKeys    []string      `mapstructure:"service_keys"`
	ClientKeys     []string      `mapstructure:"client_keys"`
	SuperKeys      []string      `mapstructure:"super_keys"`
	RequestTimeout time.Duration `mapstructure:"request_timeout"`
	MaxFrame       ByteSize      `mapstructure:"max_frame"`
	AllowedOrigins []string      `mapstructure:"allowed_origins"`
}

// Relay configures the HTTP relay ingress.
type Relay struct {
	AgentWait       time.Duration     `mapstructure:"agent_wait"`
	AckTimeout      time.Duration     `mapstructure:"ack_timeout"`
	ResponseTimeout time.Duration     `mapstructure:"response_timeout"`
	APIKeys         map[string]string `mapstructure:"api_keys"`
}

// HTTP configures the public listener.
type HTTP struct {
	CORSOrigins []string `mapstructure:"cors_origins"`
	// BodyLimit caps request bodies of the JSON APIs (not pipes or relay).
	BodyLimit ByteSize `mapstructure:"body_limit"`
	// BodyTimeout bounds the time a client may take to send the request body
	// of a JSON API (not pipes, relay, /read or /mm). Default 30s; 0 = none.
	BodyTimeout time.Duration `mapstructure:"body_timeout"`
	// TrustedProxies lists the IP addresses and CIDR prefixes of proxies
	// whose X-Forwarded-For/-Host/-Proto the relay keeps; from any other
	// peer they are replaced. Default empty: trust no one.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
}

// Log configures slog.
type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Shutdown configures graceful stop.
type Shutdown struct {
	Grace time.Duration `mapstructure:"grace"`
}

// GatewayKeys is the gateway's key table.
func GatewayKeys() []Key {
	return []Key{
		{Name: "listen", Default: ":8080", Usage: "public HTTP address"},
		{Name: "data_dir", Default: "./data", Usage: "embedded JetStream store directory"},
		{Name: "nats.url", Default: "", Usage: "comma-separated NATS URLs; empty = start an embedded server"},
		{Name: "nats.creds", Default: "", Usage: "NATS credentials file"},
		{Name: "nats.token", Default: "", Usage: "NATS auth token"},
		{Name: "nats.user", Default: "", Usage: "NATS user"},
		{Name: "nats.password", Default: "", Usage: "NATS password"},
		{Name: "embedded.listen", Default: "127.0.0.1:4222", Usage: "embedded server client address (agents connect here); -1 or :0 = random port on 127.0.0.1; a non-loopback address needs embedded.agents or embedded.allow_anonymous"},
		{Name: "embedded.agents", Default: []AgentUser(nil), Usage: "file only: agent users {user, password, upstreams}; enables auth on the embedded server"},
		{Name: "embedded.allow_anonymous", Default: false, Usage: "allow a non-loopback embedded.listen without embedded.agents (anyone reaching it gets full access)"},
		{Name: "jetstream.replicas", Default: 1, Usage: "replicas of the streams and buckets the gateway creates (3 in a cluster)", Aliases: []string{"replicas"}},
		{Name: "megaphone.agent", Default: "main", Usage: "agent name prefix of channel addresses"},
		{Name: "megaphone.buffer_size", Default: 100, Usage: "events buffered per channel"},
		{Name: "megaphone.write_wait", Default: 10 * time.Second, Usage: "how long a write waits for room before 503"},
		{Name: "megaphone.poll_duration", Default: 20 * time.Second, Usage: "length of one /read poll"},
		{Name: "megaphone.channel_ttl", Default: 60 * time.Second, Usage: "channel life after its last completed read"},
		{Name: "megaphone.admin_token", Default: "", Usage: "bearer token for /admin routes; empty = admin routes off"},
		{Name: "megaphone.webhook_url", Default: "", Usage: "on-channel-deleted webhook target; empty = off"},
		{Name: "pipe.timeout", Default: time.Duration(0), Usage: "max wait for a pipe partner before 408; 0 = none"},
		{Name: "middleman.service_keys", Default: []string{}, Usage: "comma-separated trusted keys", Aliases: []string{"mm-service-keys"}},
		{Name: "middleman.client_keys", Default: []string{}, Usage: "comma-separated untrusted keys", Aliases: []string{"mm-client-keys"}},
		{Name: "middleman.super_keys", Default: []string{}, Usage: "comma-separated keys that are trusted and receive every PUB"},
		{Name: "middleman.request_timeout", Default: 30 * time.Second, Usage: "REQ without RES after this -> PUB ERROR"},
		{Name: "middleman.max_frame", Default: ByteSize(1 << 20), Usage: "largest accepted WebSocket frame"},
		{Name: "middleman.allowed_origins", Default: []string{}, Usage: "extra allowed WebSocket Origins (* = any); same host is always allowed"},
		{Name: "relay.agent_wait", Default: 5 * time.Second, Usage: "wait for an agent of an upstream to appear before 503"},
		{Name: "relay.ack_timeout", Default: 2 * time.Second, Usage: "wait for the chosen agent to accept a request"},
		{Name: "relay.response_timeout", Default: 30 * time.Second, Usage: "wait for the upstream's response headers before 504"},
		{Name: "relay.api_keys", Default: map[string]string{}, Usage: "upstream=key pairs; a listed upstream requires Authorization: Bearer key"},
		{Name: "http.cors_origins", Default: []string{}, Usage: "CORS allow-list for Megaphone routes (* = any)"},
		{Name: "http.body_limit", Default: ByteSize(1 << 20), Usage: "largest request body of the JSON APIs (pipes and relay stream any size)"},
		{Name: "http.body_timeout", Default: 30 * time.Second, Usage: "time allowed to send the request body of a JSON API before 408; 0 = none (pipes, relay, /read, /mm: never)"},
		{Name: "http.trusted_proxies", Default: []string{}, Usage: "IPs and CIDRs of proxies whose X-Forwarded-For/-Host/-Proto the relay keeps; others' are replaced"},
		{Name: "log.level", Default: "info", Usage: "log level: debug, info, warn, error"},
		{Name: "log.format", Default: "text", Usage: "log format: text or json"},
		{Name: "shutdown.grace", Default: 15 * time.Second, Usage: "bound on graceful shutdown"},
	}
}

// GatewayLoader returns the loader of the gateway's configuration.
func GatewayLoader() *Loader {
	return &Loader{Name: "gateway", EnvPrefix: GatewayEnvPrefix, Keys: GatewayKeys()}
}

// Validate checks values that decode but make no sense, naming the key.
func (c *Gateway) Validate() error {
	var errs []string
	check := func(ok bool, key, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Sprintf("invalid value for key %q: %s", key, fmt.Sprintf(format, args...)))
		}
	}
	check(validListen(c.Listen), "listen", "%q is not host:port", c.Listen)
	if c.NATS.URL == "" {
		check(c.Embedded.Listen == "-1" || validListen(c.Embedded.Listen), "embedded.listen", "%q is not host:port or -1", c.Embedded.Listen)
		check(c.DataDir != "", "data_dir", "must not be empty")
		check(len(c.Embedded.Agents) > 0 || c.Embedded.AllowAnonymous || loopbackListen(c.Embedded.Listen), "embedded.listen",
			"%q is not a loopback address and embedded.agents is empty, so anyone who reaches it gets full access to the store; "+
				"listen on 127.0.0.1, configure embedded.agents, or set embedded.allow_anonymous: true", c.Embedded.Listen)
	}
	for i, a := range c.Embedded.Agents {
		check(a.User != "" && a.Password != "", "embedded.agents", "entry %d needs user and password", i)
	}
	for name, key := range c.Relay.APIKeys {
		check(name != "" && key != "", "relay.api_keys", "entry %q needs a non-empty upstream name and key", name)
	}
	check(c.JetStream.Replicas >= 1 && c.JetStream.Replicas <= 5, "jetstream.replicas", "%d is not in 1..5", c.JetStream.Replicas)
	check(c.Megaphone.Agent != "" && !strings.ContainsAny(c.Megaphone.Agent, "./ \t"), "megaphone.agent", "%q must be non-empty without '.', '/' or spaces", c.Megaphone.Agent)
	check(len(c.Megaphone.Agent) <= MaxMegaphoneAgentLen, "megaphone.agent", "%d bytes, at most %d", len(c.Megaphone.Agent), MaxMegaphoneAgentLen)
	check(c.Megaphone.BufferSize >= 1, "megaphone.buffer_size", "%d must be >= 1", c.Megaphone.BufferSize)
	for key, d := range map[string]time.Duration{
		"megaphone.write_wait": c.Megaphone.WriteWait, "megaphone.poll_duration": c.Megaphone.PollDuration,
		"megaphone.channel_ttl": c.Megaphone.ChannelTTL, "middleman.request_timeout": c.Middleman.RequestTimeout,
		"relay.agent_wait": c.Relay.AgentWait, "relay.ack_timeout": c.Relay.AckTimeout,
		"relay.response_timeout": c.Relay.ResponseTimeout, "shutdown.grace": c.Shutdown.Grace,
	} {
		check(d > 0, key, "%s must be > 0", d)
	}
	check(c.Megaphone.ChannelTTL >= time.Second, "megaphone.channel_ttl", "%s must be >= 1s", c.Megaphone.ChannelTTL)
	check(c.Pipe.Timeout >= 0, "pipe.timeout", "%s must be >= 0", c.Pipe.Timeout)
	check(c.Middleman.MaxFrame >= 1024, "middleman.max_frame", "%s must be >= 1KiB", c.Middleman.MaxFrame)
	check(c.HTTP.BodyLimit >= 1024, "http.body_limit", "%s must be >= 1KiB", c.HTTP.BodyLimit)
	check(c.HTTP.BodyTimeout >= 0, "http.body_timeout", "%s must be >= 0", c.HTTP.BodyTimeout)
	if bad := badProxy(c.HTTP.TrustedProxies); bad != "" {
		check(false, "http.trusted_proxies", "%q is not an IP address or CIDR prefix", bad)
	}
	check(c.Log.Level == "debug" || c.Log.Level == "info" || c.Log.Level == "warn" || c.Log.Level == "error", "log.level", "%q is not debug, info, warn or error", c.Log.Level)
	check(c.Log.Format == "text" || c.Log.Format == "json", "log.format", "%q is not text or json", c.Log.Format)
	return joinErrs(errs)
}

// MaxMegaphoneAgentLen bounds megaphone.agent, so that every address the
// gateway issues (a producer address is the agent, a dot and 104 token
// bytes) stays within the 256 bytes the Megaphone routes accept.
const MaxMegaphoneAgentLen = 128

// loopbackListen reports whether the embedded server's address addr only
// accepts local clients: -1, a port alone with port 0 (both mean a random
// port on 127.0.0.1), localhost or a loopback IP.
func loopbackListen(addr string) bool {
	if addr == "-1" {
		return true
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "" {
		return port == "0"
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// badProxy returns the first entry of list that is neither an IP address
// nor a CIDR prefix, or "".
func badProxy(list []string) string {
	for _, p := range list {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(p); err == nil {
			continue
		}
		return p
	}
	return ""
}

func validListen(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host != "" && strings.ContainsAny(host, " /") {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p >= 0 && p <= 65535
}

// LoadGateway parses args into a validated gateway configuration.
func LoadGateway(args []string) (*Gateway, []string, error) {
	var c Gateway
	rest, err := GatewayLoader().Load(args, &c)
	if err != nil {
		return nil, nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	return &c, rest, nil
}
