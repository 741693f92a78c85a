package console

import (
	"time"

	"github.com/switchboard/switchboard/internal/config"
)

// Config configures the console (ui.* keys).
type Config struct {
	// Enabled serves the console at /ui/ and its API at /admin/api/.
	// Default true.
	Enabled bool `mapstructure:"enabled"`
	// Token is the bearer token the console and its API require. Default
	// empty: megaphone.admin_token is used when set; with neither, only
	// clients on the gateway's own host get the console.
	Token string `mapstructure:"token"`
	// Interval is how often a gateway publishes its status to the
	// cluster's consoles and samples its traffic counters. Default 2 s; a
	// gateway that stopped disappears after 3 intervals.
	Interval time.Duration `mapstructure:"interval"`
}

const defaultInterval = 2 * time.Second

// Keys is the console's key table.
func Keys() []config.Key {
	return []config.Key{
		{Name: "ui.enabled", Default: true, Usage: "serve the web console at /ui/ and its JSON at /admin/api/"},
		{Name: "ui.token", Default: "", Usage: "bearer token of the console; empty = megaphone.admin_token, and with neither only clients on this host get the console"},
		{Name: "ui.interval", Default: defaultInterval, Usage: "how often a gateway publishes its console status and samples its traffic (a stopped gateway disappears after 3 intervals)"},
	}
}

// Validate checks the values, naming the bad key.
func (c Config) Validate() error {
	if c.Interval < 100*time.Millisecond || c.Interval > time.Minute {
		return config.Invalid("ui.interval", "%s is not in 100ms..1m", c.Interval)
	}
	return nil
}
