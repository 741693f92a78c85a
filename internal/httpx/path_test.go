package httpx

import (
	"net/http/httptest"
	"testing"
)

// TestPathParam: a parameter cut from the raw path (RawPath set) and one
// cut from the decoded path end up decoded exactly once.
func TestPathParam(t *testing.T) {
	cases := []struct {
		target string // request target; the parameter is its last segment
		want   string
	}{
		{"/x/plain", "plain"},
		{"/x/a%20b", "a b"}, // RawPath empty: the router saw "a b"
		{"/x/%25", "%"},     // RawPath empty: the router saw "%"
		{"/x/a%2Fb", "a/b"}, // RawPath set: the router saw "a%2Fb"
		{"/x/%2525", "%25"}, // decoded once, not twice
		{"/x/%41", "A"},     // needless escape: RawPath set
		{"/x/%c3%a9", "é"},  // lower-case hex: RawPath set
		{"/x/%C3%A9", "é"},  // upper-case hex: RawPath empty
		{"/x/a+b", "a+b"},   // '+' is not a space in a path
		{"/x/%2E%2E", ".."}, // dots
		{"/x/~!$&'()*,;=:@", "~!$&'()*,;=:@"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", c.target, nil)
		seg := r.URL.Path[len("/x/"):]
		if r.URL.RawPath != "" {
			seg = r.URL.RawPath[len("/x/"):] // what echo hands out then
		}
		got, err := PathParam(r, seg)
		if err != nil || got != c.want {
			t.Errorf("%s: got %q, %v; want %q", c.target, got, err, c.want)
		}
	}
	r := httptest.NewRequest("GET", "/x/a%2Fb", nil)
	if _, err := PathParam(r, "%zz"); err == nil {
		t.Error("invalid escape accepted")
	}
}
