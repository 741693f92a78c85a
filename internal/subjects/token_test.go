package subjects

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEncodeTable(t *testing.T) {
	cases := []struct{ in, want string }{
		{"abc", "abc"},
		{"A-z09", "A-z09"},
		{"a.b", "a_2Eb"},
		{"a.>", "a_2E_3E"},
		{"*", "_2A"},
		{">", "_3E"},
		{"with space", "with_20space"},
		{"tab\t", "tab_09"},
		{"nul\x00", "nul_00"},
		{"_", "_5F"},
		{"_2E", "_5F2E"},
		{"é", "_C3_A9"},
		{"MSG:abc", "MSG_3Aabc"},
		{"\xff", "_FF"},
	}
	for _, c := range cases {
		got, err := Encode(c.in)
		if err != nil {
			t.Fatalf("Encode(%q): %v", c.in, err)
		}
		if got != c.want {
			t.Errorf("Encode(%q) = %q, want %q", c.in, got, c.want)
		}
		back, err := Decode(got)
		if err != nil || back != c.in {
			t.Errorf("Decode(%q) = %q, %v; want %q", got, back, err, c.in)
		}
	}
}

func TestEncodeEmpty(t *testing.T) {
	if _, err := Encode(""); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Encode(\"\") err = %v, want ErrEmpty", err)
	}
	if _, err := Decode(""); !errors.Is(err, ErrEmpty) {
		t.Fatalf("Decode(\"\") err = %v, want ErrEmpty", err)
	}
}

func TestDecodeRejectsForeignTokens(t *testing.T) {
	for _, tok := range []string{"a.b", "a*", ">", "_", "_2", "_2e", "_41", "_ZZ", "a b", "a_"} {
		if _, err := Decode(tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("Decode(%q) err = %v, want ErrBadToken", tok, err)
		}
	}
}

// TestWildcardNamesDoNotAlias proves that names made of subject syntax map
// to distinct literal tokens.
func TestWildcardNamesDoNotAlias(t *testing.T) {
	names := []string{"a", "a.>", "a.*", "a.b", "a_2Eb", "*", ">", "a b", "a\nb", "a.", ".a"}
	seen := map[string]string{}
	for _, n := range names {
		tok, err := Encode(n)
		if err != nil {
			t.Fatal(err)
		}
		if !IsValidToken(tok) {
			t.Errorf("Encode(%q) = %q is not a valid token", n, tok)
		}
		if prev, dup := seen[tok]; dup {
			t.Errorf("Encode(%q) == Encode(%q) == %q", n, prev, tok)
		}
		seen[tok] = n
	}
}

func FuzzEncode(f *testing.F) {
	for _, s := range []string{"a", "a.>", "*", "_", "_2E", "é", "\x00", "MSG:x y", strings.Repeat(".", 10)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		tok, err := Encode(name)
		if name == "" || len(name) > MaxNameLen {
			if err == nil {
				t.Fatalf("name of %d bytes accepted", len(name))
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode(%q): %v", name, err)
		}
		if len(tok) > 3*MaxNameLen {
			t.Fatalf("Encode of %d bytes gave %d", len(name), len(tok))
		}
		if !IsValidToken(tok) || strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("Encode(%q) = %q holds subject syntax", name, tok)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] >= utf8.RuneSelf {
				t.Fatalf("Encode(%q) = %q is not ASCII", name, tok)
			}
		}
		back, err := Decode(tok)
		if err != nil || back != name {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", name, back, err)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"a", "_2E", "_5F", "_41", "__", "a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		name, err := Decode(tok)
		if err != nil {
			return
		}
		again, err := Encode(name)
		if err != nil || again != tok {
			t.Fatalf("Encode(Decode(%q)) = %q, %v: two tokens for one name", tok, again, err)
		}
	})
}
