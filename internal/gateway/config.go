package gateway

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/console"
	"github.com/switchboard/switchboard/internal/megaphone"
	"github.com/switchboard/switchboard/internal/middleman"
	"github.com/switchboard/switchboard/internal/natsconn"
	"github.com/switchboard/switchboard/internal/pipe"
	"github.com/switchboard/switchboard/internal/relay"
	"github.com/switchboard/switchboard/internal/subjects"
)

// EnvPrefix prefixes the gateway's environment variables.
const EnvPrefix = "SWITCHBOARD"

// Config is the gateway binary's configuration: the gateway's own sections
// and the four protocols' configs, each declared (keys, defaults,
// validation) by its protocol.
type Config struct {
	// Listen is the public HTTP address. Default ":8080".
	Listen string `mapstructure:"listen"`
	// DataDir is the embedded JetStream store directory. Default "./data".
	DataDir   string          `mapstructure:"data_dir"`
	NATS      NATS            `mapstructure:"nats"`
	Embedded  Embedded        `mapstructure:"embedded"`
	JetStream JetStream       `mapstructure:"jetstream"`
	HTTP      HTTP            `mapstructure:"http"`
	TLS       TLS             `mapstructure:"tls"`
	Log       config.Log      `mapstructure:"log"`
	Shutdown  config.Shutdown `mapstructure:"shutdown"`

	Megaphone megaphone.Config `mapstructure:"megaphone"`
	Pipe      pipe.Config      `mapstructure:"pipe"`
	Middleman middleman.Config `mapstructure:"middleman"`
	Relay     relay.Config     `mapstructure:"relay"`
	UI        console.Config   `mapstructure:"ui"`
}

// NATS is the gateway's NATS client settings: the shared ones, and the
// optional credentials of a second connection that carries only the relay
// and whose NATS permissions allow only relay subjects
// (subjects.RelayCallerPermissions). In embedded mode that connection and
// its user are automatic; against an external cluster the relay uses the
// gateway's own connection unless relay credentials are set.
type NATS struct {
	config.NATS `mapstructure:",squash"`
	// RelayCreds is a credentials file for the relay connection. Default
	// empty.
	RelayCreds string `mapstructure:"relay_creds"`
	// RelayUser and RelayPassword authenticate the relay connection.
	// Default empty.
	RelayUser     string `mapstructure:"relay_user"`
	RelayPassword string `mapstructure:"relay_password"`
}

// relayAuth reports the relay connection's credentials, if any are set.
func (n NATS) relayAuth() (natsconn.Auth, bool) {
	a := natsconn.Auth{Creds: n.RelayCreds, User: n.RelayUser, Password: n.RelayPassword}
	return a, a.Creds != "" || a.User != ""
}

// Embedded configures the in-process nats-server used when NATS.URL is
// empty.
type Embedded struct {
	// Listen is the client address agents connect to. Default
	// "127.0.0.1:4222"; "-1" or ":0" = a random port on 127.0.0.1.
	Listen string `mapstructure:"listen"`
	// Agents, when non-empty, turns on auth: each agent user may only serve
	// its upstreams. Default none (no auth; loopback only).
	Agents []AgentUser `mapstructure:"agents"`
	// AllowAnonymous lets Listen be a non-loopback address while Agents is
	// empty, i.e. gives anyone who reaches it full access. Default false:
	// such a configuration is refused.
	AllowAnonymous bool `mapstructure:"allow_anonymous"`
	// TLSCertFile and TLSKeyFile (PEM) make the client port TLS only;
	// TLSVerifyClients with TLSCAFile also requires a client certificate
	// signed by that CA (mTLS). The gateway's in-process connections are
	// unaffected. Default empty/false.
	TLSCertFile      string `mapstructure:"tls_cert_file"`
	TLSKeyFile       string `mapstructure:"tls_key_file"`
	TLSCAFile        string `mapstructure:"tls_ca_file"`
	TLSVerifyClients bool   `mapstructure:"tls_verify_clients"`
	// Websocket serves the embedded server's NATS WebSocket transport at
	// /nats on the public listener (agents dial wss://host/nats). Needs
	// Agents or AllowAnonymous. Default false.
	Websocket bool `mapstructure:"websocket"`
}

// validateTLS checks the embedded.tls_* keys.
func (e Embedded) validateTLS() []error {
	var errs []error
	if (e.TLSCertFile == "") != (e.TLSKeyFile == "") {
		errs = append(errs, config.Invalid("embedded.tls_cert_file", "set both embedded.tls_cert_file and embedded.tls_key_file"))
	}
	if e.TLSVerifyClients && (e.TLSCAFile == "" || e.TLSCertFile == "") {
		errs = append(errs, config.Invalid("embedded.tls_verify_clients", "needs embedded.tls_ca_file and embedded.tls_cert_file/tls_key_file"))
	}
	if e.TLSCAFile != "" && !e.TLSVerifyClients {
		errs = append(errs, config.Invalid("embedded.tls_ca_file", "is only used with embedded.tls_verify_clients: true"))
	}
	return errs
}

// AgentUser is one agent account of the embedded server.
type AgentUser struct {
	User      string   `mapstructure:"user"`
	Password  string   `mapstructure:"password"`
	Upstreams []string `mapstructure:"upstreams"`
}

// JetStream configures the streams and buckets the protocols create.
type JetStream struct {
	// Replicas is the replication factor, 1..5. Default 1 (3 in a cluster).
	Replicas int `mapstructure:"replicas"`
	// Partitions is how many streams the Megaphone event stream, the pipe
	// queue stream and the Megaphone channels and readers buckets are each
	// split into, 1..64. Default 1. Every gateway of a cluster must use
	// the same value (recorded in the cluster at first start).
	Partitions int `mapstructure:"partitions"`
}

// HTTP configures the public listener's limits, shared by the protocols.
type HTTP struct {
	// CORSOrigins is the CORS allow-list of the Megaphone routes ("*" =
	// any). Default empty: no CORS headers.
	CORSOrigins []string `mapstructure:"cors_origins"`
	// BodyLimit caps request bodies of the JSON APIs (not pipes or relay).
	// Default 1 MiB.
	BodyLimit config.ByteSize `mapstructure:"body_limit"`
	// BodyTimeout bounds the time a client may take to send the request
	// body of a JSON API (not pipes, relay, /read or /mm). Default 30 s;
	// 0 = none.
	BodyTimeout time.Duration `mapstructure:"body_timeout"`
	// TrustedProxies lists the IP addresses and CIDR prefixes of proxies
	// whose X-Forwarded-For/-Host/-Proto the relay keeps; from any other
	// peer they are replaced. Default empty: trust no one.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// H2C also serves cleartext HTTP/2 on a plain-HTTP listener. Default
	// false.
	H2C bool `mapstructure:"h2c"`
	// MaxConns caps the client connections the public listener holds open
	// at once (hijacked ones included); a new one beyond it gets 503 (TLS:
	// is closed). Default 0: the process's file limit minus a reserve of a
	// tenth (at least 256) for NATS, the store and agents; -1: no cap.
	MaxConns int `mapstructure:"max_conns"`
}

// Keys is the gateway's key table: its own keys, then each protocol's.
func Keys() []config.Key {
	keys := append([]config.Key{
		{Name: "listen", Default: ":8080", Usage: "public HTTP address"},
		{Name: "data_dir", Default: "./data", Usage: "embedded JetStream store directory"},
		{Name: "nats.url", Default: "", Usage: "comma-separated NATS URLs; empty = start an embedded server"},
		{Name: "nats.creds", Default: "", Usage: "NATS credentials file"},
		{Name: "nats.token", Default: "", Usage: "NATS auth token"},
		{Name: "nats.user", Default: "", Usage: "NATS user"},
		{Name: "nats.password", Default: "", Usage: "NATS password"},
	}, config.NATSTLSKeys()...)
	keys = append(keys, []config.Key{
		{Name: "nats.relay_creds", Default: "", Usage: "external mode: credentials file of a second connection used only by the relay (permissions: subjects.RelayCallerPermissions); empty = the relay shares the gateway's connection"},
		{Name: "nats.relay_user", Default: "", Usage: "external mode: user of the relay-only connection"},
		{Name: "nats.relay_password", Default: "", Usage: "external mode: password of the relay-only connection"},
		{Name: "embedded.listen", Default: "127.0.0.1:4222", Usage: "embedded server client address (agents connect here); -1 or :0 = random port on 127.0.0.1; a non-loopback address needs embedded.agents or embedded.allow_anonymous"},
		{Name: "embedded.agents", Default: []AgentUser(nil), Usage: "file only: agent users {user, password, upstreams}; enables auth on the embedded server"},
		{Name: "embedded.allow_anonymous", Default: false, Usage: "allow a non-loopback embedded.listen without embedded.agents (anyone reaching it gets full access)"},
		{Name: "embedded.tls_cert_file", Default: "", Usage: "PEM certificate of the embedded server's client port: TLS only, plaintext refused (the gateway's in-process connections are unaffected)"},
		{Name: "embedded.tls_key_file", Default: "", Usage: "PEM key of embedded.tls_cert_file"},
		{Name: "embedded.tls_ca_file", Default: "", Usage: "PEM CA of the agents' client certificates (with embedded.tls_verify_clients)"},
		{Name: "embedded.tls_verify_clients", Default: false, Usage: "mTLS: refuse clients of the embedded port without a certificate signed by embedded.tls_ca_file"},
		{Name: "embedded.websocket", Default: false, Usage: "serve the embedded server's NATS WebSocket transport at /nats on the public listener (agents: --nats wss://host/nats); needs embedded.agents or embedded.allow_anonymous"},
		{Name: "jetstream.replicas", Default: 1, Usage: "replicas of the streams and buckets the gateway creates (3 in a cluster)", Aliases: []string{"replicas"}},
	}...)
	keys = append(keys, megaphone.Keys()...)
	keys = append(keys, config.Key{Name: "jetstream.partitions", Default: 1, Usage: "streams the Megaphone events, pipe queue and Megaphone channel/reader buckets are each split into (1..64, about one per NATS node or more); the whole cluster must agree"})
	keys = append(keys, pipe.Keys()...)
	keys = append(keys, middleman.Keys()...)
	keys = append(keys, relay.Keys()...)
	keys = append(keys, console.Keys()...)
	keys = append(keys, tlsKeys()...)
	return append(keys,
		config.Key{Name: "http.cors_origins", Default: []string{}, Usage: "CORS allow-list for Megaphone routes (* = any)"},
		config.Key{Name: "http.body_limit", Default: config.ByteSize(1 << 20), Usage: "largest request body of the JSON APIs (pipes and relay stream any size)"},
		config.Key{Name: "http.body_timeout", Default: 30 * time.Second, Usage: "time allowed to send the request body of a JSON API before 408; 0 = none (pipes, relay, /read, /mm: never)"},
		config.Key{Name: "http.max_conns", Default: 0, Usage: "most client connections held open at once (hijacked included); beyond it 503 (TLS: closed); 0 = the file limit minus a tenth (at least 256) kept for NATS, the store and agents; -1 = no cap"},
		config.Key{Name: "http.trusted_proxies", Default: []string{}, Usage: "IPs and CIDRs of proxies whose X-Forwarded-For/-Host/-Proto the relay keeps; others' are replaced"},
		config.Key{Name: "log.level", Default: "info", Usage: "log level: debug, info, warn, error"},
		config.Key{Name: "log.format", Default: "text", Usage: "log format: text or json"},
		config.Key{Name: "shutdown.grace", Default: 15 * time.Second, Usage: "bound on graceful shutdown"},
	)
}

// Loader returns the loader of the gateway's configuration.
func Loader() *config.Loader {
	return &config.Loader{Name: "gateway", EnvPrefix: EnvPrefix, Keys: Keys()}
}

// LoadConfig parses args into a validated configuration.
func LoadConfig(args []string) (*Config, []string, error) {
	var c Config
	rest, err := Loader().Load(args, &c)
	if err != nil {
		return nil, nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	return &c, rest, nil
}

// Validate checks values that decode but make no sense, naming the key:
// the gateway's own sections, then each protocol's.
func (c *Config) Validate() error {
	var errs []error
	check := func(ok bool, key, format string, args ...any) {
		if !ok {
			errs = append(errs, config.Invalid(key, format, args...))
		}
	}
	check(config.ValidListen(c.Listen), "listen", "%q is not host:port", c.Listen)
	if c.NATS.URL == "" {
		check(c.Embedded.Listen == "-1" || config.ValidListen(c.Embedded.Listen), "embedded.listen", "%q is not host:port or -1", c.Embedded.Listen)
		check(c.DataDir != "", "data_dir", "must not be empty")
		check(len(c.Embedded.Agents) > 0 || c.Embedded.AllowAnonymous || loopbackListen(c.Embedded.Listen), "embedded.listen",
			"%q is not a loopback address and embedded.agents is empty, so anyone who reaches it gets full access to the store; "+
				"listen on 127.0.0.1, configure embedded.agents, or set embedded.allow_anonymous: true", c.Embedded.Listen)
	}
	errs = append(errs, c.Embedded.validateTLS()...)
	check(!c.Embedded.Websocket || c.NATS.URL == "", "embedded.websocket", "needs embedded mode (nats.url empty); point agents at the cluster's own WebSocket listener instead")
	check(!c.Embedded.Websocket || len(c.Embedded.Agents) > 0 || c.Embedded.AllowAnonymous, "embedded.websocket",
		"needs embedded.agents (or embedded.allow_anonymous): /nats is reachable by anyone who reaches the public listener")
	errs = append(errs, c.TLS.validate(c.HTTP.H2C)...)
	for i, a := range c.Embedded.Agents {
		check(a.User != "" && a.Password != "", "embedded.agents", "entry %d needs user and password", i)
	}
	errs = append(errs, c.NATS.ValidateTLS())
	check(c.NATS.RelayCreds == "" || c.NATS.RelayUser == "", "nats.relay_creds", "set either nats.relay_creds or nats.relay_user, not both")
	check(c.JetStream.Replicas >= 1 && c.JetStream.Replicas <= 5, "jetstream.replicas", "%d is not in 1..5", c.JetStream.Replicas)
	check(c.JetStream.Partitions >= 1 && c.JetStream.Partitions <= subjects.MaxPartitions, "jetstream.partitions", "%d is not in 1..%d", c.JetStream.Partitions, subjects.MaxPartitions)
	check(c.Shutdown.Grace > 0, "shutdown.grace", "%s must be > 0", c.Shutdown.Grace)
	check(c.HTTP.BodyLimit >= 1024, "http.body_limit", "%s must be >= 1KiB", c.HTTP.BodyLimit)
	check(c.HTTP.MaxConns >= -1, "http.max_conns", "%d must be -1 (no cap), 0 (from the file limit) or positive", c.HTTP.MaxConns)
	check(c.HTTP.BodyTimeout >= 0, "http.body_timeout", "%s must be >= 0", c.HTTP.BodyTimeout)
	if bad := config.BadProxy(c.HTTP.TrustedProxies); bad != "" {
		check(false, "http.trusted_proxies", "%q is not an IP address or CIDR prefix", bad)
	}
	errs = append(errs, c.Log.Validate())
	errs = append(errs, c.Megaphone.Validate(), c.Pipe.Validate(), c.Middleman.Validate(), c.Relay.Validate(), c.UI.Validate())
	return config.Join(errs...)
}

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
