package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// NATS holds client connection settings (nats.* keys).
type NATS struct {
	// URL is a comma-separated list of server URLs.
	URL      string `mapstructure:"url"`
	Creds    string `mapstructure:"creds"`
	Token    string `mapstructure:"token"`
	User     string `mapstructure:"user"`
	Password string `mapstructure:"password"`
}

// Log configures slog (log.* keys).
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `mapstructure:"level"`
	// Format is text or json. Default text.
	Format string `mapstructure:"format"`
}

// LogKeys are the log.* keys every binary has.
func LogKeys() []Key {
	return []Key{
		{Name: "log.level", Default: "info", Usage: "log level: debug, info, warn, error"},
		{Name: "log.format", Default: "text", Usage: "log format: text or json"},
	}
}

// Validate checks the log section, naming the bad key.
func (l Log) Validate() error {
	var errs []error
	if l.Level != "debug" && l.Level != "info" && l.Level != "warn" && l.Level != "error" {
		errs = append(errs, Invalid("log.level", "%q is not debug, info, warn or error", l.Level))
	}
	if l.Format != "text" && l.Format != "json" {
		errs = append(errs, Invalid("log.format", "%q is not text or json", l.Format))
	}
	return Join(errs...)
}

// Shutdown configures graceful stop (shutdown.* keys).
type Shutdown struct {
	// Grace bounds a graceful shutdown. Default 15 s.
	Grace time.Duration `mapstructure:"grace"`
}

// ValidListen reports whether addr is host:port with a port in 0..65535.
func ValidListen(addr string) bool {
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

// BadProxy returns the first entry of list that is neither an IP address
// nor a CIDR prefix, or "".
func BadProxy(list []string) string {
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
