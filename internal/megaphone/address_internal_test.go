package megaphone

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRandomAlnum(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := randomAlnum(idLen)
		if len(s) != idLen || !isAlnum(s) || seen[s] {
			t.Fatalf("randomAlnum = %q", s)
		}
		seen[s] = true
	}
}

func TestProducerTokens(t *testing.T) {
	key := make([]byte, 32)
	c, err := newTokenCodec(key)
	if err != nil {
		t.Fatal(err)
	}
	id := randomAlnum(idLen)
	prod := c.ProducerAddress("main", id)
	if strings.Count(prod, ".") != 1 || strings.Contains(prod, id) {
		t.Fatalf("producer address %q", prod)
	}
	a, err := c.resolve(prod)
	if err != nil || a.id != id || a.consumer || a.agent != "main" {
		t.Fatalf("resolve(producer) = %+v, %v", a, err)
	}
	a, err = c.resolve(ConsumerAddress("main", id))
	if err != nil || a.id != id || !a.consumer {
		t.Fatalf("resolve(consumer) = %+v, %v", a, err)
	}
	other, _ := newTokenCodec(append([]byte{1}, key[1:]...))
	bad := []string{
		"nodot", ".x", "main.", "main.!!", "other" + prod[4:], prod + "A", prod[:len(prod)-1],
		other.ProducerAddress("main", id), "main." + id + ".2",
	}
	for _, addr := range bad {
		if _, err := c.resolve(addr); !errors.Is(err, ErrBadAddress) {
			t.Errorf("resolve(%q) = %v, want ErrBadAddress", addr, err)
		}
	}
}

// TestVerifiedTokens: a producer address that verified is answered from
// memory the same way; tampered ones still fail next to it; the memory
// stays bounded.
func TestVerifiedTokens(t *testing.T) {
	c, _ := newTokenCodec(make([]byte, 32))
	id := randomAlnum(idLen)
	prod := c.ProducerAddress("main", id)
	for range 3 {
		if a, err := c.resolve(prod); err != nil || a.id != id || a.agent != "main" || a.consumer {
			t.Fatalf("resolve(producer) = %+v, %v", a, err)
		}
		for _, bad := range []string{"other" + prod[4:], prod + "A", prod[:len(prod)-1]} {
			if _, err := c.resolve(bad); !errors.Is(err, ErrBadAddress) {
				t.Fatalf("resolve(%q) = %v, want ErrBadAddress", bad, err)
			}
		}
	}
	for range maxVerified + 100 {
		if _, err := c.resolve(c.ProducerAddress("main", randomAlnum(idLen))); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.verified.len(); n > maxVerified {
		t.Fatalf("%d verified addresses remembered, at most %d", n, maxVerified)
	}
	if a, err := c.resolve(prod); err != nil || a.id != id {
		t.Fatalf("resolve(producer) after the memory was reset = %+v, %v", a, err)
	}
}

func FuzzResolve(f *testing.F) {
	c, _ := newTokenCodec(make([]byte, 32))
	f.Add("main." + strings.Repeat("a", 50) + ".1")
	f.Add(c.ProducerAddress("main", strings.Repeat("b", 50)))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, addr string) {
		a, err := c.resolve(addr)
		if err != nil {
			return
		}
		if len(a.id) != idLen || !isAlnum(a.id) || a.agent == "" {
			t.Fatalf("resolve(%q) = %+v", addr, a)
		}
	})
}

func TestWholeSeconds(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		0: time.Second, 300 * time.Millisecond: time.Second, time.Second: time.Second,
		1500 * time.Millisecond: 2 * time.Second, 20 * time.Second: 20 * time.Second,
	} {
		if got := wholeSeconds(in); got != want {
			t.Errorf("wholeSeconds(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestStatusOf(t *testing.T) {
	for err, want := range map[error]int{
		ErrBadAddress: 400, ErrNotFound: 404, ErrBusy: 409, ErrTimeout: 503, ErrMediaType: 415,
		ErrTooLarge: 413, ErrUnauthorized: 401, errors.New("x"): 500,
	} {
		if got, _ := StatusOf(errors.Join(errors.New("ctx"), err)); got != want {
			t.Errorf("StatusOf(%v) = %d, want %d", err, got, want)
		}
	}
}
