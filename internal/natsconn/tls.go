package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// TLS holds the PEM files of a NATS client's TLS settings. All empty means
// TLS only when a URL says tls:// (or wss://), verified against the
// system's roots.
type TLS struct {
	// CAFile verifies the server's certificate instead of the system's
	// roots. Default empty.
	CAFile string
	// CertFile and KeyFile are the client certificate and key sent to a
	// server that asks for one (mTLS). Both or neither.
	CertFile string
	KeyFile  string
}

// ErrTLSFiles is returned when only one of the client certificate and key
// is set.
var ErrTLSFiles = errors.New("natsconn: set both the TLS client certificate and its key, or neither")

// Enabled reports whether any file is set.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Options returns the connect option requiring TLS with t's files (minimum
// TLS 1.2), or none when no file is set. The files are read now, so a bad
// file is reported before any dial.
func (t TLS) Options() ([]nats.Option, error) {
	if !t.Enabled() {
		return nil, nil
	}
	cfg, err := t.Config()
	if err != nil {
		return nil, err
	}
	return []nats.Option{nats.Secure(cfg)}, nil
}

// Config builds the client TLS config of t's files.
func (t TLS) Config() (*tls.Config, error) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, ErrTLSFiles
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("natsconn: tls CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("natsconn: tls CA file %s: no PEM certificate in it", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("natsconn: tls client certificate %s: %w", t.CertFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// permanent reports whether err, met while connecting for the first
// time, will not go away by retrying: a failed TLS handshake (the server's
// certificate does not verify), a server that hangs up right after the
// handshake (it refused our certificate, or its absence), or TLS required
// on one side only. Connect fails at once on them instead of retrying
// until its context ends. A handshake that timed out is not one.
func permanent(err error) bool {
	var (
		verify *tls.CertificateVerificationError
		op     *net.OpError
	)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false
	case errors.As(err, &verify), errors.Is(err, nats.ErrTLS):
		return true
	case errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted):
		return true
	case errors.As(err, &op) && op.Op == "remote error":
		return true // a TLS alert: "certificate required", "bad certificate"
	}
	return false
}

// explain adds what a TLS error most likely means.
func explain(err error) error {
	if strings.Contains(err.Error(), "closed by remote after TLS handshake") {
		return fmt.Errorf("%w (the server refused our client certificate, or its absence)", err)
	}
	return err
}
