package embedded

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
)

// TLS configures TLS on the embedded server's client port.
type TLS struct {
	// CertFile and KeyFile are the server's PEM certificate and key. When
	// set, the client port accepts TLS only (plaintext clients are
	// refused); the gateway's in-process connections are unaffected.
	CertFile string
	KeyFile  string
	// CAFile verifies client certificates.
	CAFile string
	// VerifyClients requires every client of the port to present a
	// certificate signed by CAFile (mTLS).
	VerifyClients bool
}

// ErrTLSConfig is returned for an incomplete TLS configuration.
var ErrTLSConfig = errors.New("embedded: tls")

func (t TLS) enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// apply sets opts' TLS: minimum TLS 1.2, client certificates verified
// against CAFile when VerifyClients.
func (t TLS) apply(opts *server.Options) error {
	if !t.enabled() {
		if t.VerifyClients || t.CAFile != "" {
			return fmt.Errorf("%w: a CA or client verification needs the server certificate and key", ErrTLSConfig)
		}
		return nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return fmt.Errorf("%w: set both the certificate and its key", ErrTLSConfig)
	}
	if t.VerifyClients && t.CAFile == "" {
		return fmt.Errorf("%w: client verification needs a CA file", ErrTLSConfig)
	}
	cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: t.CertFile, KeyFile: t.KeyFile, CaFile: t.CAFile, Verify: t.VerifyClients,
		MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTLSConfig, err)
	}
	opts.TLS = true
	opts.TLSConfig = cfg
	opts.TLSVerify = t.VerifyClients
	opts.TLSTimeout = 2
	return nil
}
