package middleman

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/subjects"
)

// MaxKeyLen is the longest key, in bytes, of any command and of the
// handshake. A longer key is refused before any NATS call: a command with
// `PUB ERROR Key too long CMD <start>…`, the handshake with close 1008.
const MaxKeyLen = subjects.MaxNameLen

// Defaults of [Config], declared once: the key table ([Keys]) and
// [Config.withDefaults] both read them.
const (
	DefaultRequestTimeout                   = 30 * time.Second
	DefaultMaxFrame         config.ByteSize = 1 << 20
	DefaultPingInterval                     = 25 * time.Second
	DefaultHandshakeTimeout                 = 10 * time.Second
	DefaultWriteTimeout                     = 10 * time.Second
	DefaultSendQueue                        = 4096
)

// Config configures the middleman protocol: the middleman.* keys of the
// gateway and the knobs of its [Hub]. Zero values mean the documented
// defaults.
type Config struct {
	// ServiceKeys are the trusted handshake keys (middleman.service_keys).
	// Each is at most [MaxKeyLen] bytes. Default none.
	ServiceKeys []string `mapstructure:"service_keys"`
	// ClientKeys are the untrusted handshake keys (middleman.client_keys).
	// Each is at most [MaxKeyLen] bytes. Default none.
	ClientKeys []string `mapstructure:"client_keys"`
	// SuperKeys are trusted keys whose connections receive every PUB
	// (middleman.super_keys). Each is at most [MaxKeyLen] bytes. Default
	// none.
	SuperKeys []string `mapstructure:"super_keys"`
	// RequestTimeout bounds the wait for the RES of a REQ
	// (middleman.request_timeout). Default 30 s; 0 = the default.
	RequestTimeout time.Duration `mapstructure:"request_timeout"`
	// MaxFrame is the largest accepted WebSocket frame, in bytes
	// (middleman.max_frame). Default 1 MiB; 0 = the default.
	MaxFrame config.ByteSize `mapstructure:"max_frame"`
	// AllowedOrigins are the browser Origins allowed to open /mm besides
	// the gateway's own host (middleman.allowed_origins): "*" = any;
	// "https://app.example" matches scheme and host; anything else is a
	// host pattern such as "app.example:8443" or "*.example". Default
	// none: only requests without Origin or from the same host.
	AllowedOrigins []string `mapstructure:"allowed_origins"`

	// PingInterval is the WebSocket ping period. Default 25 s; 0 = the
	// default. Not a config key: tests and embedders tune it.
	PingInterval time.Duration `mapstructure:"-"`
	// HandshakeTimeout bounds the wait for the handshake key. Default
	// 10 s; 0 = the default. Not a config key: tests and embedders tune it.
	HandshakeTimeout time.Duration `mapstructure:"-"`
	// WriteTimeout bounds one batch of writes to a client. Default 10 s;
	// 0 = the default. Not a config key: tests and embedders tune it.
	WriteTimeout time.Duration `mapstructure:"-"`
	// SendQueue is the most frames queued for one client. Default 4096;
	// 0 = the default. Not a config key: tests and embedders tune it.
	SendQueue int `mapstructure:"-"`
	// SendQueueBytes is the most bytes queued for one client. Default
	// 4 × MaxFrame; 0 = the default. Beyond either bound the client is a
	// slow consumer. Not a config key: tests and embedders tune it.
	SendQueueBytes int `mapstructure:"-"`
}

// Keys are the middleman rows of the gateway's key table.
func Keys() []config.Key {
	return []config.Key{
		{Name: "middleman.service_keys", Default: []string{}, Usage: "comma-separated trusted keys", Aliases: []string{"mm-service-keys"}},
		{Name: "middleman.client_keys", Default: []string{}, Usage: "comma-separated untrusted keys", Aliases: []string{"mm-client-keys"}},
		{Name: "middleman.super_keys", Default: []string{}, Usage: "comma-separated keys that are trusted and receive every PUB"},
		{Name: "middleman.request_timeout", Default: DefaultRequestTimeout, Usage: "REQ without RES after this -> PUB ERROR"},
		{Name: "middleman.max_frame", Default: DefaultMaxFrame, Usage: "largest accepted WebSocket frame"},
		{Name: "middleman.allowed_origins", Default: []string{}, Usage: "extra allowed WebSocket Origins (* = any); same host is always allowed"},
	}
}

// withDefaults returns c with every zero (or negative) knob set to its
// default.
func (c Config) withDefaults() Config {
	setDuration := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDuration(&c.RequestTimeout, DefaultRequestTimeout)
	setDuration(&c.PingInterval, DefaultPingInterval)
	setDuration(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDuration(&c.WriteTimeout, DefaultWriteTimeout)
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.SendQueue <= 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.SendQueueBytes <= 0 {
		c.SendQueueBytes = 4 * int(c.MaxFrame)
	}
	return c
}

// Validate checks values that decode but make no sense, naming the key.
func (c Config) Validate() error {
	var errs []error
	if c.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("invalid value for key %q: %s must be > 0", "middleman.request_timeout", c.RequestTimeout))
	}
	if c.MaxFrame < 1024 {
		errs = append(errs, fmt.Errorf("invalid value for key %q: %s must be >= 1KiB", "middleman.max_frame", c.MaxFrame))
	}
	return errors.Join(errs...)
}
