package pipe

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/natsio"
)

// Defaults, declared once: [Keys] and [Config.withDefaults] both read them.
const (
	// defaultTimeout is pipe.timeout's default: wait forever.
	defaultTimeout time.Duration = 0
	// defaultClaimTimeout is ClaimTimeout's default.
	defaultClaimTimeout = 3 * time.Second
	// defaultMarkerTTL is MarkerTTL's default.
	defaultMarkerTTL = 15 * time.Second
	// minMarkerTTL is the shortest per-message TTL JetStream accepts.
	minMarkerTTL = time.Second
	// defaultSweepInterval is SweepInterval's default.
	defaultSweepInterval = 30 * time.Second
	// defaultMaxReceivers is pipe.max_receivers' default.
	defaultMaxReceivers = 256
	// MaxReceiversLimit is the largest pipe.max_receivers accepted.
	MaxReceiversLimit = 4096
)

// Config configures rendezvous pipes: the pipe.* keys and the knobs of
// the [Hub]. The replica count of the queue stream comes from
// protocol.Deps, shutdown from its tracker.
type Config struct {
	// Timeout bounds a party's wait for a partner; one that waits longer
	// gets 408. Key pipe.timeout, default 0; 0 = wait forever.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxReceivers is the largest ?n=N a producer or consumer may ask
	// for, and the most consumers one pub/sub POST reaches. Key
	// pipe.max_receivers, default 256, at most [MaxReceiversLimit].
	MaxReceivers int `mapstructure:"max_receivers"`

	// ClaimTimeout bounds a claim sent to another gateway and its liveness
	// ping: a holder that does not answer in time is treated as gone.
	// Not a config key: tests and embedders tune it. Default 3 s; 0 (or
	// less) = the default.
	ClaimTimeout time.Duration `mapstructure:"-"`
	// MarkerTTL is how long a matcher marker lives if its gateway dies
	// mid-match. Not a config key: tests and embedders tune it. Default
	// 15 s; 0, or anything below JetStream's minimum of 1 s, = the default.
	MarkerTTL time.Duration `mapstructure:"-"`
	// SweepInterval is how often queue entries of vanished gateways are
	// looked for and removed, and local parties whose entries the queue
	// lost are looked for (see [Hub.findLost]). Not a config key: tests
	// and embedders tune it. Default 30 s; 0 (or less) = the default.
	SweepInterval time.Duration `mapstructure:"-"`
	// Stream tunes the body streams between gateways (chunk size, window,
	// heartbeat, peer timeout; see natsio.Options for each default). Not
	// a config key: tests and embedders tune it. Zero = natsio's defaults;
	// a nil CheckPeer = the peer check of this gateway's inbox space.
	Stream natsio.Options `mapstructure:"-"`
}

// Keys returns the pipe rows of the gateway's key table.
func Keys() []config.Key {
	return []config.Key{
		{Name: "pipe.timeout", Default: defaultTimeout, Usage: "max wait for a pipe partner before 408; 0 = none"},
		{Name: "pipe.max_receivers", Default: defaultMaxReceivers, Usage: "largest ?n=N of a pipe (one sender, N receivers); most consumers one pub/sub POST reaches"},
	}
}

// withDefaults returns c with every zero (or out-of-range) knob set to
// its default.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.ClaimTimeout <= 0 {
		c.ClaimTimeout = defaultClaimTimeout
	}
	if c.MarkerTTL < minMarkerTTL {
		c.MarkerTTL = defaultMarkerTTL
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = defaultSweepInterval
	}
	if c.MaxReceivers <= 0 {
		c.MaxReceivers = defaultMaxReceivers
	}
	return c
}

// Validate checks the values of the pipe.* keys, naming the bad key.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout < 0 {
		errs = append(errs, invalid("pipe.timeout", "%s must be >= 0", c.Timeout))
	}
	if c.MaxReceivers < 0 || c.MaxReceivers > MaxReceiversLimit {
		errs = append(errs, invalid("pipe.max_receivers", "%d must be between 1 and %d (0 = the default %d)",
			c.MaxReceivers, MaxReceiversLimit, defaultMaxReceivers))
	}
	return errors.Join(errs...)
}

// invalid is the error of a bad value of key.
func invalid(key, format string, args ...any) error {
	return fmt.Errorf("invalid value for key %q: %s", key, fmt.Sprintf(format, args...))
}
