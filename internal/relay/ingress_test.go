package relay

import (
	"errors"
	"net/http/httptest"
	"testing"
)

func TestSplitPath(t *testing.T) {
	cases := []struct{ in, name, path string }{
		{"/relay/a", "a", "/"},
		{"/relay/a/", "a", "/"},
		{"/relay/a/b/c", "a", "/b/c"},
		{"/relay/a/x%2Fy", "a", "/x%2Fy"},
		{"/relay/a%2Fb/x", "a/b", "/x"},
		{"/relay/my%20api/", "my api", "/"},
		{"/relay/a//x", "a", "//x"},
	}
	for _, c := range cases {
		name, path, err := SplitPath(c.in)
		if err != nil || name != c.name || path != c.path {
			t.Errorf("SplitPath(%q) = %q, %q, %v; want %q, %q", c.in, name, path, err, c.name, c.path)
		}
	}
	for _, bad := range []string{"/relay/", "/relay//x", "/relay/%zz/x", "/other/a"} {
		if _, _, err := SplitPath(bad); !errors.Is(err, ErrBadRequest) {
			t.Errorf("SplitPath(%q) err = %v", bad, err)
		}
	}
}

func TestBearer(t *testing.T) {
	for auth, want := range map[string]bool{
		"Bearer k": true, "bearer k": true, "Bearer  k ": true,
		"": false, "Bearer": false, "Bearer x": false, "Basic k": false, "k": false,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", auth)
		if got := bearer(r, "k"); got != want {
			t.Errorf("bearer(%q) = %v", auth, got)
		}
	}
}
