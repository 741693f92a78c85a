package middleman

import (
	"bytes"
	"fmt"
	"net/textproto"
	"strings"
)

// Header names the server sets or reads.
const (
	HeaderCid    = "Cid"
	HeaderUid    = "Uid"
	HeaderRid    = "Rid"
	HeaderForcid = "Forcid"
	HeaderSetuid = "Setuid"
)

// Header is one header line of a frame. Name is in canonical form.
type Header struct {
	Name  string
	Value string
}

// Frame is one middleman message: a command line, headers, a body.
//
// On the wire (one WebSocket text message):
//
//	CMD KEY\r\n
//	Name: value\r\n
//	\r\n
//	dot-stuffed body lines\r\n
//	.\r\n
//
// Parse accepts LF or CRLF line ends. Body line ends are carried as "\n"
// and written as "\r\n"; the newline before the terminating "." belongs to
// the terminator, so a body never gains a newline per hop.
type Frame struct {
	// Cmd is the command (PUB, SUB, ...), upper-case ASCII letters.
	Cmd string
	// Key is everything after the first space of the command line.
	Key string
	// Header holds the headers in order, names canonical.
	Header []Header
	// Body is the unstuffed body with "\n" line ends.
	Body []byte
}

// Get returns the last value of header name ("" when absent).
func (f *Frame) Get(name string) string {
	v, _ := f.Lookup(name)
	return v
}

// Lookup returns the last value of header name and whether it is present.
func (f *Frame) Lookup(name string) (string, bool) {
	name = textproto.CanonicalMIMEHeaderKey(name)
	for i := len(f.Header) - 1; i >= 0; i-- {
		if f.Header[i].Name == name {
			return f.Header[i].Value, true
		}
	}
	return "", false
}

// Del removes every header called name.
func (f *Frame) Del(name string) {
	name = textproto.CanonicalMIMEHeaderKey(name)
	out := f.Header[:0]
	for _, h := range f.Header {
		if h.Name != name {
			out = append(out, h)
		}
	}
	clear(f.Header[len(out):])
	f.Header = out
}

// Set replaces every header called name by one with value.
func (f *Frame) Set(name, value string) {
	f.Del(name)
	f.Header = append(f.Header, Header{Name: textproto.CanonicalMIMEHeaderKey(name), Value: value})
}

// Parse parses one frame. Errors wrap [ErrMalformed] and name the reason.
// A frame that ends right after its command line or its headers has an
// empty body and needs no terminator. A CR that does not end a line is
// refused in the command line and in headers (a reader that takes a bare
// CR as a line end would see a header nobody checked); in the body it is
// data.
func Parse(data []byte) (*Frame, error) {
	line, rest, _ := cutLine(data)
	cmd, key, ok := strings.Cut(string(line), " ")
	switch {
	case len(line) == 0:
		return nil, malformed("empty command line")
	case bytes.IndexByte(line, '\r') >= 0:
		return nil, malformed("bare CR in command line")
	case !ok:
		return nil, malformed("missing key after command")
	case !validCommand(cmd):
		return nil, malformed("invalid command")
	case key == "":
		return nil, malformed("empty key")
	}
	f := &Frame{Cmd: cmd, Key: key}
	for len(rest) > 0 {
		var ended bool
		line, rest, ended = cutLine(rest)
		if len(line) == 0 {
			if !ended {
				break // "\r" alone: end of headers and of the frame
			}
			body, err := parseBody(rest)
			if err != nil {
				return nil, err
			}
			f.Body = body
			return f, nil
		}
		h, err := parseHeader(line)
		if err != nil {
			return nil, err
		}
		f.Header = append(f.Header, h)
	}
	return f, nil
}

// cutLine splits off the first line, dropping its LF and one CR before it.
// ended reports whether the line was terminated by LF.
func cutLine(b []byte) (line, rest []byte, ended bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.TrimSuffix(b, []byte{'\r'}), nil, false
	}
	return bytes.TrimSuffix(b[:i], []byte{'\r'}), b[i+1:], true
}

func parseHeader(line []byte) (Header, error) {
	if bytes.IndexByte(line, '\r') >= 0 {
		return Header{}, malformed("bare CR in header line")
	}
	name, value, ok := bytes.Cut(line, []byte{':'})
	if !ok {
		return Header{}, malformed("header line without ':'")
	}
	if !validHeaderName(name) {
		return Header{}, malformed("invalid header name")
	}
	return Header{
		Name:  textproto.CanonicalMIMEHeaderKey(string(name)),
		Value: string(bytes.Trim(value, " \t")),
	}, nil
}

// parseBody unstuffs the body section after the blank line. It must end
// with a line holding a single '.', optionally followed by CRLF or LF.
// An empty section is an empty body.
func parseBody(sec []byte) ([]byte, error) {
	if len(bytes.TrimRight(sec, "\r\n")) == 0 {
		return nil, nil // blank lines only: no body, no terminator
	}
	s := bytes.TrimSuffix(sec, []byte{'\n'})
	s = bytes.TrimSuffix(s, []byte{'\r'})
	var raw []byte
	switch {
	case len(s) == 1 && s[0] == '.':
		return []byte{}, nil
	case bytes.HasSuffix(s, []byte("\n.")):
		raw = s[:len(s)-2] // the last line's CR goes with cutLine below
	default:
		return nil, malformed("missing terminator line '.'")
	}
	body := make([]byte, 0, len(raw))
	for first := true; ; first = false {
		line, rest, ended := cutLine(raw)
		if len(line) > 0 && line[0] == '.' {
			if len(line) == 1 {
				return nil, malformed("data after terminator line '.'")
			}
			line = line[1:]
		}
		if !first {
			body = append(body, '\n')
		}
		body = append(body, line...)
		if !ended {
			return body, nil
		}
		raw = rest
	}
}

// Append appends the wire form of f to dst.
func (f *Frame) Append(dst []byte) []byte {
	dst = appendCommand(dst, f.Cmd, f.Key)
	for _, h := range f.Header {
		dst = appendHeader(dst, h.Name, h.Value)
	}
	return appendBody(dst, f.Body)
}

// Bytes returns the wire form of f.
func (f *Frame) Bytes() []byte {
	n := len(f.Cmd) + len(f.Key) + len(f.Body) + len(f.Body)/32 + 16
	for _, h := range f.Header {
		n += len(h.Name) + len(h.Value) + 4
	}
	return f.Append(make([]byte, 0, n))
}

func appendCommand(dst []byte, cmd, key string) []byte {
	dst = append(dst, cmd...)
	dst = append(dst, ' ')
	dst = append(dst, key...)
	return append(dst, '\r', '\n')
}

func appendHeader(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}

// appendBody appends the blank line, the dot-stuffed body with CRLF line
// ends, and the terminator.
func appendBody(dst, body []byte) []byte {
	dst = append(dst, '\r', '\n')
	for first := true; ; first = false {
		line, rest, found := bytes.Cut(body, []byte{'\n'})
		if !first {
			dst = append(dst, '\r', '\n')
		}
		if len(line) > 0 && line[0] == '.' {
			dst = append(dst, '.')
		}
		dst = append(dst, line...)
		if !found {
			break
		}
		body = rest
	}
	return append(dst, '\r', '\n', '.', '\r', '\n')
}

// validCommand reports whether cmd is 1..16 upper-case ASCII letters.
func validCommand(cmd string) bool {
	if cmd == "" || len(cmd) > 16 {
		return false
	}
	for i := 0; i < len(cmd); i++ {
		if cmd[i] < 'A' || cmd[i] > 'Z' {
			return false
		}
	}
	return true
}

// validHeaderName reports whether name is an RFC 7230 token.
func validHeaderName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func malformed(reason string) error { return fmt.Errorf("%w: %s", ErrMalformed, reason) }
