package subjects

import (
	"errors"
	"fmt"
	"strings"
)

// ErrEmpty is returned when a user-supplied name is empty.
var ErrEmpty = errors.New("subjects: empty name")

// ErrBadToken is returned when a token was not produced by [Encode].
var ErrBadToken = errors.New("subjects: malformed token")

// ErrTooLong is returned when a user-supplied name is longer than
// [MaxNameLen] bytes, or a subject would be longer than [MaxSubjectLen].
var ErrTooLong = errors.New("subjects: name too long")

// Bounds. Every user-supplied name (namespace, channel name, channel id,
// middleman key, upstream name) is at most MaxNameLen bytes, so its token
// is at most 3*MaxNameLen bytes, and every subject built from such names is
// at most MaxSubjectLen bytes. nats-server refuses a protocol line longer
// than max_control_line (default 4096) and closes the connection; a PUB
// line holds the subject, a reply subject and two numbers, so MaxSubjectLen
// leaves room for a reply of the same size and the numbers.
const (
	MaxNameLen    = 256
	MaxSubjectLen = 1800
)

// Prefix is the first token of every subject Switchboard uses.
const Prefix = "sb"

const hexDigits = "0123456789ABCDEF"

// safe reports whether b stands for itself in an encoded token. The escape
// byte '_' is not safe, which keeps the encoding injective.
func safe(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-'
}

// Encode maps a non-empty name to one subject token. Bytes in [A-Za-z0-9-]
// are kept; every other byte becomes '_' followed by two upper-case hex
// digits. The result is also a valid stream, consumer and KV key name.
func Encode(name string) (string, error) {
	if name == "" {
		return "", ErrEmpty
	}
	if len(name) > MaxNameLen {
		return "", fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, len(name), MaxNameLen)
	}
	n := 0
	for i := 0; i < len(name); i++ {
		if !safe(name[i]) {
			n++
		}
	}
	if n == 0 {
		return name, nil
	}
	var sb strings.Builder
	sb.Grow(len(name) + 2*n)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if safe(c) {
			sb.WriteByte(c)
			continue
		}
		sb.WriteByte('_')
		sb.WriteByte(hexDigits[c>>4])
		sb.WriteByte(hexDigits[c&0x0f])
	}
	return sb.String(), nil
}

// Decode reverses [Encode]. It rejects any token Encode cannot produce,
// so Decode(t) succeeds only when Encode(Decode(t)) == t.
func Decode(token string) (string, error) {
	if token == "" {
		return "", ErrEmpty
	}
	if len(token) > 3*MaxNameLen {
		return "", fmt.Errorf("%w: token of %d bytes", ErrTooLong, len(token))
	}
	if !strings.Contains(token, "_") {
		if len(token) > MaxNameLen {
			return "", fmt.Errorf("%w: token of %d bytes", ErrTooLong, len(token))
		}
		for i := 0; i < len(token); i++ {
			if !safe(token[i]) {
				return "", fmt.Errorf("%w: byte %q at %d", ErrBadToken, token[i], i)
			}
		}
		return token, nil
	}
	out := make([]byte, 0, len(token))
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case safe(c):
			out = append(out, c)
		case c == '_' && i+2 < len(token) && isUpperHex(token[i+1]) && isUpperHex(token[i+2]):
			b := unhex(token[i+1])<<4 | unhex(token[i+2])
			if safe(b) {
				return "", fmt.Errorf("%w: needless escape at %d", ErrBadToken, i)
			}
			out = append(out, b)
			i += 2
		default:
			return "", fmt.Errorf("%w: byte %q at %d", ErrBadToken, c, i)
		}
	}
	if len(out) > MaxNameLen {
		return "", fmt.Errorf("%w: token of %d bytes", ErrTooLong, len(token))
	}
	return string(out), nil
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// join builds a subject from already-safe tokens.
func join(tokens ...string) string { return strings.Join(tokens, ".") }

// bounded returns subject, or ErrTooLong when it is longer than
// [MaxSubjectLen]. Builders whose tokens come from user input end with it,
// so no input can build a subject the server would refuse.
func bounded(subject string) (string, error) {
	if len(subject) > MaxSubjectLen {
		return "", fmt.Errorf("%w: subject of %d bytes, at most %d", ErrTooLong, len(subject), MaxSubjectLen)
	}
	return subject, nil
}

// IsValidToken reports whether tok can be used as one subject token: it is
// non-empty and holds no '.', '*', '>', whitespace or control character.
func IsValidToken(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c == '.' || c == '*' || c == '>' || c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
