package natsconn

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchboard/switchboard/internal/tlstest"
)

// TestTLSFiles: no file = no option; bad files are reported before any
// dial.
func TestTLSFiles(t *testing.T) {
	if opts, err := (TLS{}).Options(); err != nil || opts != nil {
		t.Fatalf("no files: %v %v", opts, err)
	}
	ca := tlstest.NewCA(t, "x")
	c := ca.Client("c")
	if opts, err := (TLS{CAFile: ca.CertFile, CertFile: c.CertFile, KeyFile: c.KeyFile}).Options(); err != nil || len(opts) != 1 {
		t.Fatalf("good files: %v %v", opts, err)
	}
	if _, err := (TLS{CertFile: c.CertFile}).Options(); !errors.Is(err, ErrTLSFiles) {
		t.Fatalf("certificate without key: %v", err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for name, files := range map[string]TLS{
		"CA not PEM":   {CAFile: notPEM},
		"CA missing":   {CAFile: notPEM + ".missing"},
		"key mismatch": {CertFile: c.CertFile, KeyFile: ca.Client("d").KeyFile},
	} {
		if _, err := files.Options(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
