package megaphone

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/config"
)

// The defaults, declared once: [Keys] gives them to the key table and
// [Config.withDefaults] to a Config built in code.
const (
	defaultAgent        = "main"
	defaultBufferSize   = 100
	defaultWriteWait    = 10 * time.Second
	defaultPollDuration = 20 * time.Second
	defaultChannelTTL   = 60 * time.Second
	defaultMarkerTTL    = time.Hour
	// defaultMaxEventBytes 0 = the NATS payload limit only, the limit
	// events always had.
	defaultMaxEventBytes config.ByteSize = 0
	// minMaxEventBytes is the smallest max_event_bytes that is not 0: an
	// event's envelope alone is about 80 bytes.
	minMaxEventBytes config.ByteSize = 1 << 10
)

// MaxAgentLen bounds megaphone.agent, so that every address the gateway
// issues (a producer address is the agent, a dot and 104 token bytes)
// stays within the 256 bytes the Megaphone routes accept.
const MaxAgentLen = 128

// Config configures Megaphone: the megaphone.* keys, plus the knobs that
// tests and embedders tune. Zero values mean the documented defaults.
type Config struct {
	// Agent is the first part of every address the gateway issues: at
	// most MaxAgentLen bytes, without '.', '/' or spaces. Default "main";
	// "" = the default.
	Agent string `mapstructure:"agent"`
	// BufferSize is the number of events buffered per channel. Default
	// 100; 0 = the default.
	BufferSize int `mapstructure:"buffer_size"`
	// WriteWait is how long a write to a full channel waits for room
	// before 503 CHANNEL_FULL. Default 10s; 0 = the default.
	WriteWait time.Duration `mapstructure:"write_wait"`
	// PollDuration is the length of one /read poll. Default 20s; 0 = the
	// default.
	PollDuration time.Duration `mapstructure:"poll_duration"`
	// ChannelTTL is a channel's life after its last completed read (or
	// its creation), at least 1s. Default 60s; 0 = the default.
	ChannelTTL time.Duration `mapstructure:"channel_ttl"`
	// AdminToken is the bearer token of the /admin routes. Default "":
	// the admin routes are off.
	AdminToken string `mapstructure:"admin_token"`
	// WebhookURL receives a POST for every deleted channel. Default "":
	// no webhook.
	WebhookURL string `mapstructure:"webhook_url"`
	// MaxEventBytes is the largest event a write may store, in bytes of
	// the NDJSON line a reader receives: the stored
	// {"sid","eid","ts","body"} object as encoded (body compacted) plus
	// its '\n'. A larger event is stored nowhere: 413 on /write,
	// PAYLOAD_TOO_LARGE in /write-batch. Default 0 = the NATS payload
	// limit only (max_payload less 512 bytes for headers), which every
	// value is held to as well; otherwise at least 1KiB. 65535 keeps
	// events readable by megaphone-js 0.10.3, which breaks on lines of
	// 64 KiB or more.
	MaxEventBytes config.ByteSize `mapstructure:"max_event_bytes"`
	// KeepAlivePolls serves every /read poll through net/http, which
	// keeps the connection open for the next request after the poll, at
	// about three times the memory per open poll. Default false: an
	// HTTP/1.1 poll is parked (the gateway takes its connection over
	// and closes it when the poll ends, "Connection: close"); HTTP/2
	// polls are always served through net/http.
	KeepAlivePolls bool `mapstructure:"keep_alive_polls"`
	// MarkerTTL is how long expiry markers stay in the buckets, which
	// bounds how long every gateway may be down without missing an
	// expiry; at least 1s. Default 1h; 0 = the default. Not a config key:
	// tests and embedders tune it.
	MarkerTTL time.Duration `mapstructure:"-"`
}

// Keys are Megaphone's rows of the gateway's key table.
func Keys() []config.Key {
	return []config.Key{
		{Name: "megaphone.agent", Default: defaultAgent, Usage: "agent name prefix of channel addresses"},
		{Name: "megaphone.buffer_size", Default: defaultBufferSize, Usage: "events buffered per channel"},
		{Name: "megaphone.write_wait", Default: defaultWriteWait, Usage: "how long a write waits for room before 503"},
		{Name: "megaphone.poll_duration", Default: defaultPollDuration, Usage: "length of one /read poll"},
		{Name: "megaphone.channel_ttl", Default: defaultChannelTTL, Usage: "channel life after its last completed read"},
		{Name: "megaphone.admin_token", Default: "", Usage: "bearer token for /admin routes; empty = admin routes off"},
		{Name: "megaphone.webhook_url", Default: "", Usage: "on-channel-deleted webhook target; empty = off"},
		{Name: "megaphone.keep_alive_polls", Default: false, Usage: "serve /read polls through net/http and keep the connection after a poll (more memory per poll); false = park HTTP/1.1 polls and close their connection at the end"},
		{Name: "megaphone.max_event_bytes", Default: defaultMaxEventBytes, Usage: "largest event a write may store, as the NDJSON line a reader gets (object + newline); larger = 413; 0 = only the NATS payload limit"},
	}
}

// withDefaults returns c with every unset (or out of range) field at its
// default.
func (c Config) withDefaults() Config {
	if c.Agent == "" {
		c.Agent = defaultAgent
	}
	if c.BufferSize <= 0 {
		c.BufferSize = defaultBufferSize
	}
	if c.WriteWait <= 0 {
		c.WriteWait = defaultWriteWait
	}
	if c.PollDuration <= 0 {
		c.PollDuration = defaultPollDuration
	}
	if c.ChannelTTL < time.Second {
		c.ChannelTTL = defaultChannelTTL
	}
	if c.MaxEventBytes < 0 {
		c.MaxEventBytes = defaultMaxEventBytes
	}
	if c.MarkerTTL < time.Second {
		c.MarkerTTL = defaultMarkerTTL
	}
	return c
}

// Validate checks values that decode but make no sense, naming the key.
// It checks the configuration as loaded, before defaults apply.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, key, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("invalid value for key %q: %s", key, fmt.Sprintf(format, args...)))
		}
	}
	check(c.Agent != "" && !strings.ContainsAny(c.Agent, "./ \t"), "megaphone.agent", "%q must be non-empty without '.', '/' or spaces", c.Agent)
	check(len(c.Agent) <= MaxAgentLen, "megaphone.agent", "%d bytes, at most %d", len(c.Agent), MaxAgentLen)
	check(c.BufferSize >= 1, "megaphone.buffer_size", "%d must be >= 1", c.BufferSize)
	check(c.WriteWait > 0, "megaphone.write_wait", "%s must be > 0", c.WriteWait)
	check(c.PollDuration > 0, "megaphone.poll_duration", "%s must be > 0", c.PollDuration)
	check(c.ChannelTTL > 0, "megaphone.channel_ttl", "%s must be > 0", c.ChannelTTL)
	check(c.ChannelTTL >= time.Second, "megaphone.channel_ttl", "%s must be >= 1s", c.ChannelTTL)
	check(c.MaxEventBytes == 0 || c.MaxEventBytes >= minMaxEventBytes, "megaphone.max_event_bytes",
		"%d must be 0 (the NATS payload limit only) or >= %d", c.MaxEventBytes, minMaxEventBytes)
	return errors.Join(errs...)
}
