package gateway

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/tlstest"
)

// TestTLSKeysValidation: incomplete or contradictory TLS settings stop
// start-up with a message naming the key.
func TestTLSKeysValidation(t *testing.T) {
	for key, args := range map[string][]string{
		"tls.cert_file":               {"--tls-cert-file", "c.pem"},
		"tls.client_ca_file":          {"--tls-client-ca-file", "ca.pem"},
		"http.h2c":                    {"--tls-cert-file", "c.pem", "--tls-key-file", "k.pem", "--http-h2c"},
		"embedded.tls_cert_file":      {"--embedded-tls-key-file", "k.pem"},
		"embedded.tls_verify_clients": {"--embedded-tls-cert-file", "c.pem", "--embedded-tls-key-file", "k.pem", "--embedded-tls-verify-clients"},
		"embedded.tls_ca_file":        {"--embedded-tls-cert-file", "c.pem", "--embedded-tls-key-file", "k.pem", "--embedded-tls-ca-file", "ca.pem"},
		"embedded.websocket":          {"--embedded-websocket"},
		"nats.tls_cert_file":          {"--nats-tls-cert-file", "c.pem"},
	} {
		_, err := load(t, nil, args...)
		if err == nil || !strings.Contains(err.Error(), `"`+key+`"`) {
			t.Errorf("%v: error %v does not name %s", args, err, key)
		}
	}
	if _, err := load(t, nil, "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem", "--http-h2c=false",
		"--embedded-tls-cert-file", "c.pem", "--embedded-tls-key-file", "k.pem"); err != nil {
		t.Fatalf("valid TLS settings refused: %v", err)
	}
	file := writeFile(t, "embedded:\n  websocket: true\n  agents: [{user: u, password: p, upstreams: [a]}]\n")
	if _, err := load(t, nil, "--config", file); err != nil {
		t.Fatalf("embedded.websocket with agents refused: %v", err)
	}
}

// TestCertificatesKeepLastGood: a certificate file that changes into
// something that does not load leaves the previous certificate in
// service; a good one replaces it.
func TestCertificatesKeepLastGood(t *testing.T) {
	ca := tlstest.NewCA(t, "x")
	files := ca.Server("gw")
	c, err := newCertificates(files.CertFile, files.KeyFile, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.checkEvery = 0
	first, _ := c.get(nil)
	if err := os.WriteFile(files.CertFile, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.get(nil); got != first {
		t.Fatal("a broken file replaced the certificate")
	}
	if err := c.Reload(); err == nil {
		t.Fatal("Reload of a broken file did not fail")
	}
	ca.Server("gw") // rewrites both files
	if got, _ := c.get(nil); got == first {
		t.Fatal("the new certificate was not loaded")
	}
	if _, err := newCertificates(files.CertFile+".missing", files.KeyFile, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Fatal("a missing file was accepted at start")
	}
}

func TestIsAdminPath(t *testing.T) {
	for p, want := range map[string]bool{"/metrics": true, "/admin/channels": true, "/ui/": true, "/ui": true,
		"/readyz": false, "/relay/admin/x": false, "/uix": false, "/create": false} {
		if isAdminPath(p) != want {
			t.Errorf("isAdminPath(%q) = %v", p, !want)
		}
	}
}
