package harness_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/switchboard/switchboard/integration/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLoadConn checks the benchmark client against net/http's server:
// fixed-length and chunked responses, a request body, and reuse of one
// connection for several requests.
func TestLoadConn(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(http.StatusCreated)
			w.Write(b)
		case "/chunked":
			for i := range 3 {
				io.WriteString(w, strings.Repeat(string(rune('a'+i)), 5000))
				w.(http.Flusher).Flush()
			}
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	lc, err := harness.DialLoad(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()

	echo := harness.LoadRequest("POST", host, "/echo", map[string]string{"Content-Type": "text/plain"}, []byte("hello"))
	for range 3 {
		status, body, err := lc.Do(echo)
		if err != nil || status != 201 || string(body) != "hello" {
			t.Fatalf("echo = %d %q %v", status, body, err)
		}
	}
	status, body, err := lc.Do(harness.LoadRequest("GET", host, "/chunked", nil, nil))
	want := strings.Repeat("a", 5000) + strings.Repeat("b", 5000) + strings.Repeat("c", 5000)
	if err != nil || status != 200 || string(body) != want {
		t.Fatalf("chunked = %d, %d bytes, %v", status, len(body), err)
	}
	status, _, err = lc.Do(harness.LoadRequest("GET", host, "/missing", nil, nil))
	if err != nil || status != 404 {
		t.Fatalf("missing = %d %v", status, err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1 reused", n)
	}
}
