package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckPeer(t *testing.T) {
	in, _ := RelayInbox("demo")
	other, _ := RelayInbox("other")
	good := []struct{ subj, prefix string }{
		{in + ".abc", in},
		{in + ".abc.7", in},
		{"_INBOX.x.y", "_INBOX"},
		{"any.literal.subject", ""},
	}
	for _, c := range good {
		if err := CheckPeer(c.subj, c.prefix); err != nil {
			t.Errorf("CheckPeer(%q, %q) = %v, want ok", c.subj, c.prefix, err)
		}
	}
	bad := []struct{ subj, prefix string }{
		{"", ""},
		{"", in},
		{in, in},                   // the prefix itself is not under it
		{in + ".", in},             // empty token
		{in + "..x", in},           // empty token
		{in + ".*", in},            // wildcard
		{in + ".>", in},            // wildcard
		{in + ".a*b", in},          // wildcard byte
		{in + ".a b", in},          // space
		{in + ".a\r\nPUB x 1", in}, // protocol injection
		{in + "x.y", in},           // shares the prefix's bytes, not its tokens
		{other + ".abc", in},       // another upstream
		{"$JS.API.STREAM.DELETE.SB_MEGAPHONE", in},
		{"$KV.sb_mm_trust.ESUB.k", in},
		{"sb.>", in},
		{"sb.>", ""},
		{in + "." + strings.Repeat("a", 5000), in},
		{strings.Repeat("a.", 1000) + "a", ""},
	}
	for _, c := range bad {
		if err := CheckPeer(c.subj, c.prefix); !errors.Is(err, ErrForeignSubject) {
			t.Errorf("CheckPeer(%.80q, %q) = %v, want ErrForeignSubject", c.subj, c.prefix, err)
		}
	}
}

// FuzzCheckPeer asserts that nothing CheckPeer accepts lies outside the
// prefix, is a wildcard, holds protocol syntax or is over the bound.
func FuzzCheckPeer(f *testing.F) {
	in, _ := RelayInbox("demo")
	for _, s := range []string{in + ".a", in + ".>", "$JS.API.>", in + ".a.b", in + "x", in} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subj string) {
		if CheckPeer(subj, in) != nil {
			return
		}
		if !strings.HasPrefix(subj, in+".") || len(subj) > MaxSubjectLen {
			t.Fatalf("accepted %q outside %q", subj, in)
		}
		for _, tok := range strings.Split(subj, ".") {
			if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n*>") {
				t.Fatalf("accepted non-literal %q", subj)
			}
		}
	})
}
