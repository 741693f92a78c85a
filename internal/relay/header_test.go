package relay

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

func TestRemoveHopByHop(t *testing.T) {
	h := http.Header{
		"Connection":          {"X-A, x-b", "Keep-Alive"},
		"X-A":                 {"1"},
		"X-B":                 {"2"},
		"Keep-Alive":          {"timeout=5"},
		"Te":                  {"trailers"},
		"Trailer":             {"X"},
		"Transfer-Encoding":   {"chunked"},
		"Upgrade":             {"websocket"},
		"Proxy-Authorization": {"p"},
		"Proxy-Connection":    {"keep-alive"},
		"Proxy-Anything":      {"x"},
		"X-Keep":              {"k"},
		"Content-Type":        {"text/plain"},
	}
	RemoveHopByHop(h)
	if len(h) != 2 || h.Get("X-Keep") != "k" || h.Get("Content-Type") != "text/plain" {
		t.Fatalf("left %v", h)
	}
}

func TestOutgoingHeader(t *testing.T) {
	r := httptest.NewRequest("GET", "http://example.com/x", nil)
	r.RemoteAddr = "192.0.2.7:5555"
	r.Header.Set("Connection", "close")
	out := OutgoingHeader(r, nil)
	if out.Get("X-Forwarded-For") != "192.0.2.7" || out.Get("X-Forwarded-Host") != "example.com" || out.Get("X-Forwarded-Proto") != "http" || out.Get("Connection") != "" {
		t.Fatalf("%v", out)
	}
	if r.Header.Get("Connection") != "close" {
		t.Fatal("input header modified")
	}
}

// forged is what a client writes to pass for someone else.
var forged = http.Header{
	"X-Forwarded-For":    {"10.9.9.9", "10.8.8.8"},
	"X-Forwarded-Host":   {"admin.internal"},
	"X-Forwarded-Proto":  {"https"},
	"X-Forwarded-Prefix": {"/admin"},
	"X-Forwarded-Port":   {"443"},
	"Forwarded":          {"for=10.9.9.9;proto=https"},
	"X-Real-Ip":          {"10.9.9.9"},
}

// TestOutgoingHeaderUntrustedPeer: a peer that is not a trusted proxy
// cannot choose the forwarding headers the upstream sees.
func TestOutgoingHeaderUntrustedPeer(t *testing.T) {
	trusted, err := ParseTrustedProxies([]string{"10.0.0.0/8", "2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range []*TrustedProxies{nil, trusted} {
		r := httptest.NewRequest("GET", "http://gw.example/x", nil)
		r.RemoteAddr = "192.0.2.7:5555"
		r.Header = forged.Clone()
		out := OutgoingHeader(r, tp)
		want := http.Header{"X-Forwarded-For": {"192.0.2.7"}, "X-Forwarded-Host": {"gw.example"}, "X-Forwarded-Proto": {"http"}}
		if !reflect.DeepEqual(out, want) {
			t.Errorf("trusted %v: got %v, want %v", tp, out, want)
		}
	}
}

// TestOutgoingHeaderTrustedProxy: a trusted proxy's headers are kept and
// its address is appended to the chain.
func TestOutgoingHeaderTrustedProxy(t *testing.T) {
	trusted, err := ParseTrustedProxies([]string{"10.0.0.0/8", "2001:db8::1", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for peer, ip := range map[string]string{"10.1.2.3:80": "10.1.2.3", "[2001:db8::1]:443": "2001:db8::1", "127.0.0.1:1": "127.0.0.1", "[::ffff:10.0.0.1]:9": "::ffff:10.0.0.1"} {
		r := httptest.NewRequest("GET", "http://gw.example/x", nil)
		r.RemoteAddr = peer
		r.Header = forged.Clone()
		out := OutgoingHeader(r, trusted)
		if got := out.Get("X-Forwarded-For"); got != "10.9.9.9, 10.8.8.8, "+ip {
			t.Errorf("%s: X-Forwarded-For %q", peer, got)
		}
		for _, k := range []string{"X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix", "Forwarded", "X-Real-Ip"} {
			if out.Get(k) != forged.Get(k) {
				t.Errorf("%s: %s = %q, want %q", peer, k, out.Get(k), forged.Get(k))
			}
		}
	}
	// A trusted proxy that sent none gets them set.
	r := httptest.NewRequest("GET", "http://gw.example/x", nil)
	r.RemoteAddr = "10.0.0.1:1"
	if out := OutgoingHeader(r, trusted); out.Get("X-Forwarded-For") != "10.0.0.1" || out.Get("X-Forwarded-Host") != "gw.example" || out.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("trusted without headers: %v", out)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	if tp, err := ParseTrustedProxies(nil); tp != nil || err != nil {
		t.Fatalf("empty list: %v %v", tp, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0", ""} {
		if _, err := ParseTrustedProxies([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	tp, err := ParseTrustedProxies([]string{"10.1.2.3/8"})
	if err != nil || !tp.Trusts("10.200.0.1:5") || tp.Trusts("11.0.0.1:5") || tp.Trusts("garbage") {
		t.Fatalf("prefix not masked or matched wrongly: %v", err)
	}
}
