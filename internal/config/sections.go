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
	// TLSCAFile verifies the servers' certificates instead of the
	// system's roots; setting any TLS file requires TLS. Default empty.
	TLSCAFile string `mapstructure:"tls_ca_file"`
	// TLSCertFile and TLSKeyFile are the client certificate and key (PEM)
	// for servers that require one (mTLS). Both or neither. Default empty.
	TLSCertFile string `mapstructure:"tls_cert_file"`
	TLSKeyFile  string `mapstructure:"tls_key_file"`
}

// NATSTLSKeys are the nats.tls_* keys every binary has.
func NATSTLSKeys() []Key {
	return []Key{
		{Name: "nats.tls_ca_file", Default: "", Usage: "PEM CA that verifies the NATS servers' certificates (default: system roots); any nats.tls_* key requires TLS"},
		{Name: "nats.tls_cert_file", Default: "", Usage: "PEM client certificate for NATS servers that require one (mTLS)"},
		{Name: "nats.tls_key_file", Default: "", Usage: "PEM key of nats.tls_cert_file"},
	}
}

// ValidateTLS checks the nats.tls_* keys, naming the bad one.
func (n NATS) ValidateTLS() error {
	if (n.TLSCertFile == "") != (n.TLSKeyFile == "") {
		return Invalid("nats.tls_cert_file", "set both nats.tls_cert_file and nats.tls_key_file, or neither")
	}
	return nil
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
