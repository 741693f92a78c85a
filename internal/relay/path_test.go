package relay

import (
	"errors"
	"strings"
	"testing"
)

func TestConfinePath(t *testing.T) {
	ok := []struct{ in, want string }{
		{"/", "/"},
		{"/x", "/x"},
		{"/a/b/c", "/a/b/c"},
		{"/a/./b", "/a/b"},
		{"/a/../b", "/b"},
		{"/a/b/..", "/a/"},
		{"/a/b/.", "/a/b/"},
		{"/a/%2E%2E/b", "/b"},
		{"/a/%2e./b", "/b"},
		{"/a/.%2E/b", "/b"},
		{"/a/%2E/b", "/a/b"},
		{"/a%2Fb/c", "/a%2Fb/c"},             // escaped slash kept
		{"/a/%2E%2E%2F..", "/a/%2E%2E%2F.."}, // one segment, not a dot segment
		{"/...", "/..."},
		{"/a/..b", "/a/..b"},
		{"/.well-known/x", "/.well-known/x"},
		{"//a/../b", "//b"},
		{"/a/b/../../c", "/c"},
		{"/%252E%252E/x", "/%252E%252E/x"}, // double-encoded stays data
	}
	for _, c := range ok {
		got, err := ConfinePath(c.in)
		if err != nil || got != c.want {
			t.Errorf("ConfinePath(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"/..", "/../x", "/%2E%2E/x", "/%2e%2E", "/a/../../x", "/a/%2E%2E/%2E%2E/x", "/./../x", "x", ""} {
		if got, err := ConfinePath(in); !errors.Is(err, ErrBadRequest) {
			t.Errorf("ConfinePath(%q) = %q, %v; want ErrBadRequest", in, got, err)
		}
	}
}

// FuzzConfinePath asserts that a confined path never holds a dot segment,
// plain or encoded, so joining it to a base path cannot climb above it.
func FuzzConfinePath(f *testing.F) {
	for _, s := range []string{"/a/../b", "/%2E%2E", "/a/./b/..", "/..%2F..", "//..//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ConfinePath(in)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("ConfinePath(%q) = %q: not absolute", in, got)
		}
		for _, seg := range strings.Split(got[1:], "/") {
			if dots(seg) != 0 {
				t.Fatalf("ConfinePath(%q) = %q keeps dot segment %q", in, got, seg)
			}
		}
		if again, err := ConfinePath(got); err != nil || again != got {
			t.Fatalf("ConfinePath not idempotent on %q: %q, %v", got, again, err)
		}
	})
}
