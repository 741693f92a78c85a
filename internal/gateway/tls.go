package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/internal/config"
	"github.com/switchboard/switchboard/internal/httpx"
)

// TLS configures HTTPS on the public listener (tls.* keys).
type TLS struct {
	// CertFile and KeyFile are the PEM certificate (chain) and key. When
	// set the listener speaks TLS only, with HTTP/2. They are re-read on
	// SIGHUP and when they change, without dropping open connections.
	// Default empty: plain HTTP.
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// ClientCAFile, when set, asks clients for a certificate signed by it;
	// /metrics, /admin/… and /ui/… then require one. Default empty.
	ClientCAFile string `mapstructure:"client_ca_file"`
}

// Enabled reports whether the listener serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

func tlsKeys() []config.Key {
	return []config.Key{
		{Name: "tls.cert_file", Default: "", Usage: "PEM certificate of the public listener: serve HTTPS (HTTP/2 on); re-read on SIGHUP and when it changes"},
		{Name: "tls.key_file", Default: "", Usage: "PEM key of tls.cert_file"},
		{Name: "tls.client_ca_file", Default: "", Usage: "PEM CA of client certificates; when set, /metrics, /admin and /ui require one (mTLS)"},
		{Name: "http.h2c", Default: false, Usage: "also serve cleartext HTTP/2 (h2c) on a plain-HTTP listener, for load balancers that speak it"},
	}
}

// validate checks the tls.* keys and http.h2c.
func (t TLS) validate(h2c bool) []error {
	var errs []error
	if t.Enabled() && (t.CertFile == "" || t.KeyFile == "") {
		errs = append(errs, config.Invalid("tls.cert_file", "set both tls.cert_file and tls.key_file"))
	}
	if t.ClientCAFile != "" && !t.Enabled() {
		errs = append(errs, config.Invalid("tls.client_ca_file", "needs tls.cert_file and tls.key_file"))
	}
	if h2c && t.Enabled() {
		errs = append(errs, config.Invalid("http.h2c", "is for a plain-HTTP listener; with tls.cert_file HTTP/2 is on already"))
	}
	return errs
}

// ErrClientCertificate refuses an admin route to a client without a
// verified certificate.
var ErrClientCertificate = errors.New("gateway: a client certificate signed by tls.client_ca_file is required")

const codeClientCertificate = "CLIENT_CERTIFICATE_REQUIRED"

// certificates serves the listener's certificate and re-reads its files
// when they change (checked at most once per checkEvery, on a handshake)
// or when Reload is called. A pair that does not load keeps the last good
// one in service, with a warning.
type certificates struct {
	certFile, keyFile string
	log               *slog.Logger
	checkEvery        time.Duration
	reloads           *prometheus.CounterVec // by result; nil in unit tests
	notAfter          prometheus.Gauge       // nil in unit tests

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // the files' sizes and modification times
	checked time.Time
}

func newCertificates(certFile, keyFile string, log *slog.Logger, reg prometheus.Registerer) (*certificates, error) {
	c := &certificates{certFile: certFile, keyFile: keyFile, log: log, checkEvery: time.Second}
	if reg != nil {
		c.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_tls_certificate_reloads_total",
			Help: "Re-reads of tls.cert_file/tls.key_file after a change or SIGHUP, by result (ok, error).",
		}, []string{"result"})
		c.notAfter = prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_tls_certificate_not_after_seconds",
			Help: "Expiry (Unix time) of the certificate the public listener serves.",
		})
		reg.MustRegister(c.reloads, c.notAfter)
	}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files now.
func (c *certificates) Reload() error {
	stamp := c.fileStamp()
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	c.mu.Lock()
	first := c.cert == nil
	c.mu.Unlock()
	if c.reloads != nil && !first {
		result := "ok"
		if err != nil {
			result = "error"
		}
		c.reloads.WithLabelValues(result).Inc()
	}
	if err != nil {
		return fmt.Errorf("gateway: tls certificate %s: %w", c.certFile, err)
	}
	if c.notAfter != nil && cert.Leaf != nil {
		c.notAfter.Set(float64(cert.Leaf.NotAfter.Unix()))
	}
	c.mu.Lock()
	changed := c.cert != nil && stamp != c.stamp
	c.cert, c.stamp, c.checked = &cert, stamp, time.Now()
	c.mu.Unlock()
	if changed {
		c.log.Info("tls certificate reloaded", "file", c.certFile)
	}
	return nil
}

// get is tls.Config.GetCertificate.
func (c *certificates) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	due := time.Since(c.checked) >= c.checkEvery
	if due {
		c.checked = time.Now()
	}
	cert, stamp := c.cert, c.stamp
	c.mu.Unlock()
	if due && c.fileStamp() != stamp {
		if err := c.Reload(); err != nil {
			c.log.Warn("tls certificate changed but does not load; keeping the previous one", "err", err)
		}
		c.mu.Lock()
		cert = c.cert
		c.mu.Unlock()
	}
	return cert, nil
}

func (c *certificates) fileStamp() string {
	var b strings.Builder
	for _, f := range []string{c.certFile, c.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// tlsConfig builds the listener's TLS config: minimum TLS 1.2, Go's
// cipher choice, client certificates verified against ClientCAFile when
// given (required only by requireClientCert's routes).
func (g *Gateway) tlsConfig() (*tls.Config, error) {
	t := g.cfg.TLS
	certs, err := newCertificates(t.CertFile, t.KeyFile, g.log.With("component", "tls"), g.registry)
	if err != nil {
		return nil, err
	}
	g.certs = certs
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("gateway: tls.client_ca_file: %w", err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("gateway: tls.client_ca_file %s: no PEM certificate in it", t.ClientCAFile)
		}
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// ReloadTLS re-reads the listener's certificate files now (the gateway
// also does on SIGHUP and when they change). Open connections keep theirs.
func (g *Gateway) ReloadTLS() error {
	if g.certs == nil {
		return nil
	}
	return g.certs.Reload()
}

// protocols are the HTTP versions the listener serves.
func (g *Gateway) protocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(g.cfg.TLS.Enabled())
	p.SetUnencryptedHTTP2(g.cfg.HTTP.H2C)
	return p
}

// adminPrefixes are the routes tls.client_ca_file protects.
var adminPrefixes = []string{"/metrics/", "/admin/", "/ui/"}

// requireClientCert refuses the admin routes (403
// CLIENT_CERTIFICATE_REQUIRED) to clients without a verified certificate
// when tls.client_ca_file is set.
func (g *Gateway) requireClientCert(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if g.cfg.TLS.ClientCAFile == "" || !isAdminPath(r.URL.Path) {
			return next(c)
		}
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			httpx.WriteError(c.Response(), http.StatusForbidden, codeClientCertificate, ErrClientCertificate.Error())
			return nil
		}
		return next(c)
	}
}

func isAdminPath(p string) bool {
	for _, pre := range adminPrefixes {
		if p == pre[:len(pre)-1] || strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// reloadOnSIGHUP re-reads the listener's certificate on every SIGHUP until
// the returned function is called. Without tls.* it does nothing, and
// SIGHUP keeps its default effect.
func (g *Gateway) reloadOnSIGHUP() (stop func()) {
	if g.certs == nil {
		return func() {}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				if err := g.ReloadTLS(); err != nil {
					g.log.Warn("SIGHUP: tls certificate does not load; keeping the previous one", "err", err)
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
