package embedded

import (
	"log/slog"
	"net"
	"testing"
)

// TestRandomPortIsLoopback: "-1" and ":0" both listen on a random port of
// 127.0.0.1, never on every interface.
func TestRandomPortIsLoopback(t *testing.T) {
	for _, listen := range []string{"-1", ":0"} {
		s, err := Start(Config{Listen: listen, StoreDir: t.TempDir()}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		addr := s.ns.Addr().(*net.TCPAddr)
		s.Shutdown()
		if !addr.IP.IsLoopback() || addr.Port == 0 {
			t.Errorf("%q listened on %s", listen, addr)
		}
	}
	for listen, host := range map[string]string{":4222": "0.0.0.0", "0.0.0.0:0": "0.0.0.0", "[::1]:0": "::1", "10.0.0.1:4222": "10.0.0.1"} {
		if h, _, err := splitListen(listen); err != nil || h != host {
			t.Errorf("splitListen(%q) = %q, %v; want %q", listen, h, err, host)
		}
	}
}
