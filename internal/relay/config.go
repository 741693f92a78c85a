package relay

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/natsio"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Defaults of [Config] and [ServerConfig], declared once: the key table
// ([Keys]) and the constructors both read them.
const (
	DefaultAgentWait       = 5 * time.Second
	DefaultAckTimeout      = 2 * time.Second
	DefaultResponseTimeout = 30 * time.Second
	DefaultHeartbeat       = time.Second
	DefaultPeerTimeout     = 4 * time.Second
	DefaultInlineMax       = 64 << 10
	DefaultMaxConcurrent   = 256
	DefaultMaxUpgraded     = 1024
)

// Config configures the relay: the relay.* keys of the gateway and the
// timing of the wire protocol, which a [Client], a [Server] and the
// gateway's ingress ([Service]) share. Zero values mean the documented
// defaults.
type Config struct {
	// AgentWait bounds the wait for an agent of the upstream to appear
	// before 503 NO_AGENT (relay.agent_wait). Default 5 s; 0 = the
	// default. Caller only.
	AgentWait time.Duration `mapstructure:"agent_wait"`
	// AckTimeout bounds the wait for the chosen agent to accept a request
	// before another is asked (relay.ack_timeout). Default 2 s; 0 = the
	// default. Caller only.
	AckTimeout time.Duration `mapstructure:"ack_timeout"`
	// ResponseTimeout bounds the wait for the response head once the
	// request body was delivered, before 504 TIMEOUT
	// (relay.response_timeout). Default 30 s; 0 = the default. Caller only.
	ResponseTimeout time.Duration `mapstructure:"response_timeout"`
	// APIKeys maps upstream names to the key a client must send as
	// Authorization: Bearer <key> (relay.api_keys). An upstream not listed
	// needs no key. Default none. Gateway ingress only.
	APIKeys map[string]string `mapstructure:"api_keys"`
	// MaxUpgraded bounds the upgraded connections (WebSockets and other
	// protocols switched to with 101) open at once through this caller;
	// beyond it an upgrade request gets 503 NO_AGENT before anything is
	// relayed (relay.max_upgraded). Default 1024; 0 = the default.
	MaxUpgraded int `mapstructure:"max_upgraded"`
	// UpgradeIdleTimeout closes an upgraded connection after this long
	// without a byte in either direction (relay.upgrade_idle_timeout).
	// Default 0: no idle timeout.
	UpgradeIdleTimeout time.Duration `mapstructure:"upgrade_idle_timeout"`

	// Heartbeat is the keep-alive interval of an exchange and its streams.
	// Default 1 s; 0 = the default. Not a config key: tests and embedders
	// tune it.
	Heartbeat time.Duration `mapstructure:"-"`
	// PeerTimeout is how long the other side may stay silent before it
	// counts as lost. Default 4 s; 0 = the default. Not a config key:
	// tests and embedders tune it.
	PeerTimeout time.Duration `mapstructure:"-"`
	// InlineMax is the largest body of known size, in bytes, sent inside
	// the open or response message instead of as a stream. Default 64 KiB;
	// 0 = the default. Not a config key: tests and embedders tune it.
	InlineMax int `mapstructure:"-"`
	// Window is the natsio flow-control window of body streams, in bytes;
	// 0 = natsio's default. Not a config key: tests and embedders tune it.
	Window int `mapstructure:"-"`
}

// Keys are the relay rows of the gateway's key table.
func Keys() []config.Key {
	return []config.Key{
		{Name: "relay.agent_wait", Default: DefaultAgentWait, Usage: "wait for an agent of an upstream to appear before 503"},
		{Name: "relay.ack_timeout", Default: DefaultAckTimeout, Usage: "wait for the chosen agent to accept a request"},
		{Name: "relay.response_timeout", Default: DefaultResponseTimeout, Usage: "wait for the upstream's response headers before 504"},
		{Name: "relay.api_keys", Default: map[string]string{}, Usage: "upstream=key pairs; a listed upstream requires Authorization: Bearer key"},
		{Name: "relay.max_upgraded", Default: DefaultMaxUpgraded, Usage: "upgraded connections (WebSockets) open at once; beyond: 503 before the upgrade"},
		{Name: "relay.upgrade_idle_timeout", Default: time.Duration(0), Usage: "close an upgraded connection idle this long both ways (0 = never)"},
	}
}

// withDefaults returns c with every zero (or negative) knob set to its
// default.
func (c Config) withDefaults() Config {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&c.AgentWait, DefaultAgentWait)
	set(&c.AckTimeout, DefaultAckTimeout)
	set(&c.ResponseTimeout, DefaultResponseTimeout)
	set(&c.Heartbeat, DefaultHeartbeat)
	set(&c.PeerTimeout, DefaultPeerTimeout)
	if c.InlineMax <= 0 {
		c.InlineMax = DefaultInlineMax
	}
	if c.MaxUpgraded <= 0 {
		c.MaxUpgraded = DefaultMaxUpgraded
	}
	if c.UpgradeIdleTimeout < 0 {
		c.UpgradeIdleTimeout = 0
	}
	return c
}

// Validate checks values that decode but make no sense, naming the key.
func (c Config) Validate() error {
	var errs []error
	names := make([]string, 0, len(c.APIKeys))
	for name := range c.APIKeys {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "" || c.APIKeys[name] == "" {
			errs = append(errs, fmt.Errorf("invalid value for key %q: entry %q needs a non-empty upstream name and key", "relay.api_keys", name))
		}
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"relay.agent_wait", c.AgentWait}, {"relay.ack_timeout", c.AckTimeout}, {"relay.response_timeout", c.ResponseTimeout}} {
		if d.d <= 0 {
			errs = append(errs, fmt.Errorf("invalid value for key %q: %s must be > 0", d.key, d.d))
		}
	}
	if c.MaxUpgraded < 0 {
		errs = append(errs, fmt.Errorf("invalid value for key %q: %d must be >= 0", "relay.max_upgraded", c.MaxUpgraded))
	}
	if c.UpgradeIdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("invalid value for key %q: %s must be >= 0", "relay.upgrade_idle_timeout", c.UpgradeIdleTimeout))
	}
	return errors.Join(errs...)
}

// Body chunks: the most stream data per NATS message a side sends.
//
// Over a network connection that is 1 MiB (natsio caps it below
// max_payload): each message is what one read of the body returned. A
// caller on a connection inside the NATS server's process (the gateway
// with its embedded server) sends chunks that fit, with their protocol
// line and headers, in one read of the server (at most 64 KiB): such a
// connection hands the server each message as written, so each arrives
// whole in one read and the server hands it on from its read buffer,
// where a larger one spans reads and is gathered into a buffer allocated
// for it (allocated, zeroed, copied and collected again for every
// message). A chunk is a sender's own choice; receivers take any size.
const (
	bodyChunk       = 1 << 20
	inProcessChunk  = 64<<10 - inProcessMargin
	inProcessMargin = 1 << 10 // the message's protocol line and headers
)

// chunkFor returns the body chunk of a sender on nc.
func chunkFor(nc *nats.Conn) int {
	if nc.Opts.InProcessServer != nil {
		return inProcessChunk
	}
	return bodyChunk
}

// stream returns the natsio options of a body stream with upstream's
// inbox prefix and chunk; check vets the subjects the other side hands
// over.
func (c Config) stream(prefix string, chunk int, check func(string) error) natsio.Options {
	return natsio.Options{
		CheckPeer:   check,
		ChunkSize:   chunk,
		Window:      c.Window,
		Heartbeat:   c.Heartbeat,
		PeerTimeout: c.PeerTimeout,
		Inbox: func() string {
			return subjects.RelayExchangeSpace(prefix, strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix))
		},
	}
}

// Upgraded connections carry data both ways at once, so each stream's
// control messages (credit, heartbeats) queue behind the other
// direction's data on the same NATS connections: a small window keeps
// that queue short against PeerTimeout even on a slow link, and still
// fills loopback and LAN links.
const (
	upgradeChunk  = 128 << 10
	upgradeWindow = 1 << 20
)

// upgradeBufs hold the socket reads of upgraded connections, two per
// connection (the direction towards NATS on each side; the other one
// writes the received pieces as they are) for as long as it is open, so
// they are small: an idle WebSocket costs little.
var upgradeBufs = httpx.NewBuffers(32 << 10)

func getUpgradeBuf() []byte  { return *upgradeBufs.Get() }
func putUpgradeBuf(b []byte) { upgradeBufs.Put(&b) }

// upgradeStream returns the natsio options of an upgraded connection's
// streams: those of a body stream with a smaller chunk and window.
func upgradeStream(o natsio.Options) natsio.Options {
	o.ChunkSize, o.Window = upgradeChunk, upgradeWindow
	return o
}
