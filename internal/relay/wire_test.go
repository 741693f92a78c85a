package relay

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"testing"
)

func TestHeadRoundTrip(t *testing.T) {
	req := reqHead{Method: "PATCH", Path: "/a%2Fb/c", Query: "x=1&y=%20", Length: -1, Header: http.Header{
		"X-Multi": {"1", "2"}, "Empty": {""}, "Colon": {"a: b:c"}, "lower-case": {" spaced "},
	}}
	data, err := req.encode([]byte("body\n\nbytes"))
	if err != nil {
		t.Fatal(err)
	}
	got, body, err := decodeReq(data)
	// Names come back canonical (see TestHeaderNamesCanonical).
	want := req
	want.Header = req.Header.Clone()
	want.Header["Lower-Case"] = want.Header["lower-case"]
	delete(want.Header, "lower-case")
	if err != nil || !reflect.DeepEqual(got, want) || string(body) != "body\n\nbytes" {
		t.Fatalf("got %+v %q %v", got, body, err)
	}
	resp := respHead{Status: 207, Length: 12, Header: http.Header{"Set-Cookie": {"a=1", "b=2"}}}
	data, err = resp.encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	gotResp, body, err := decodeResp(data)
	if err != nil || !reflect.DeepEqual(gotResp, resp) || len(body) != 0 {
		t.Fatalf("got %+v %q %v", gotResp, body, err)
	}
}

func TestHeadRefusesLineBreaks(t *testing.T) {
	for _, h := range []reqHead{
		{Method: "GET\n", Path: "/"},
		{Method: "GET", Path: "/\r"},
		{Method: "GET", Path: "/", Query: "a\nb"},
		{Method: "GET", Path: "/", Header: http.Header{"X": {"a\r\nInjected: 1"}}},
		{Method: "GET", Path: "/", Header: http.Header{"X:Y": {"1"}}},
		{Method: "GET", Path: "/", Header: http.Header{"": {"1"}}},
	} {
		if _, err := h.encode(nil); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%+v encoded: %v", h, err)
		}
	}
}

func FuzzDecodeReq(f *testing.F) {
	f.Add([]byte("GET\n/x\nq=1\n0\nA: b\n\nbody"))
	f.Add([]byte("GET\n/\n\n-1\n\n"))
	f.Add([]byte("\n\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, body, err := decodeReq(data)
		if err != nil {
			return
		}
		// What decodes encodes back to an equivalent head.
		again, err := h.encode(body)
		if err != nil {
			return // e.g. a name with CR, which encode refuses
		}
		h2, body2, err := decodeReq(again)
		if err != nil || !reflect.DeepEqual(h, h2) || !bytes.Equal(body, body2) {
			t.Fatalf("re-decode: %+v %q %v", h2, body2, err)
		}
	})
}

func FuzzDecodeResp(f *testing.F) {
	f.Add([]byte("200\n5\nA: b\n\nhello"))
	f.Add([]byte("99\n0\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, _, err := decodeResp(data)
		if err == nil && (h.Status < 100 || h.Status > 999 || h.Length < -1) {
			t.Fatalf("accepted %+v", h)
		}
	})
}

// TestHeaderNamesCanonical: header names arrive from gateways, agent
// clients and agents as they were written; they are stored canonical, so
// hop-by-hop removal and every check by name see "transfer-encoding" as
// Transfer-Encoding (else it would pass through next to the writer's own
// framing headers).
func TestHeaderNamesCanonical(t *testing.T) {
	h, err := parseHeaderLines("transfer-encoding: chunked\nCONNECTION: close\ncontent-length: 5\nx-custom: a\nX-Custom: b\n\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Values("X-Custom"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("X-Custom = %q, want both values under the canonical name", got)
	}
	RemoveHopByHop(h)
	for _, k := range []string{"Transfer-Encoding", "Connection", "transfer-encoding", "CONNECTION"} {
		if _, ok := h[k]; ok {
			t.Fatalf("%s survived hop-by-hop removal: %v", k, h)
		}
	}
	if h.Get("Content-Length") != "5" {
		t.Fatalf("Content-Length not found by its canonical name: %v", h)
	}
}
