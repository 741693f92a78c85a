package relay

import (
	"net/http"
	"net/http/httptest"
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
	out := OutgoingHeader(r)
	if out.Get("X-Forwarded-For") != "192.0.2.7" || out.Get("X-Forwarded-Host") != "example.com" || out.Get("X-Forwarded-Proto") != "http" || out.Get("Connection") != "" {
		t.Fatalf("%v", out)
	}
	if r.Header.Get("Connection") != "close" {
		t.Fatal("input header modified")
	}
}
