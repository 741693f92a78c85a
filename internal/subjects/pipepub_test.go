package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestPipePubRoundTrip(t *testing.T) {
	for _, c := range [][2]string{{"v1", "x"}, {"a.b", "c d*>"}, {"ns", strings.Repeat("é", 20)}} {
		s, err := PipePub(c[0], c[1])
		if err != nil {
			t.Fatal(err)
		}
		ns, name, err := ParsePipePub(s)
		if err != nil || ns != c[0] || name != c[1] {
			t.Fatalf("ParsePipePub(%q) = %q, %q, %v; want %q, %q", s, ns, name, err, c[0], c[1])
		}
	}
	for _, bad := range []string{"sb.pipe.pub.x", "sb.pipe.claim.a.b", "sb.pipe.pub.a.b.c", "sb.pipe.pub.!.b"} {
		if _, _, err := ParsePipePub(bad); err == nil {
			t.Errorf("ParsePipePub(%q) accepted", bad)
		}
	}
	if _, err := PipePub("", "x"); err == nil {
		t.Error("PipePub with an empty namespace accepted")
	}
	if _, err := PipePub(strings.Repeat("n", MaxNameLen+1), "x"); !errors.Is(err, ErrTooLong) && err == nil {
		t.Error("PipePub with an over-long namespace accepted")
	}
}
