package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
)

// LoadConn is a lean HTTP/1.1 keep-alive connection for load generation,
// in the spirit of wrk: the request is prebuilt bytes, one request is in
// flight at a time, and the response parser reads only the status line,
// Content-Length or chunked framing, and the body. Benchmarks use it next
// to a raw NATS baseline so that, on a 2-core machine where the load
// generator shares the CPU with what it measures, the ratio reflects the
// gateway and not net/http's client (two goroutines and several
// allocations per request). It is not a general HTTP client: no redirects,
// no 1xx responses, no pipelining.
type LoadConn struct {
	conn net.Conn
	r    *bufio.Reader
	body bytes.Buffer
}

// DialLoad connects to base ("http://host:port").
func DialLoad(base string) (*LoadConn, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	return &LoadConn{conn: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

// LoadRequest renders a request for LoadConn.Do. header values are written
// as given; Content-Length is added when body is not nil.
func LoadRequest(method, host, path string, header map[string]string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// Do writes req and reads one response. The body is valid until the next
// call.
func (l *LoadConn) Do(req []byte) (status int, body []byte, err error) {
	if _, err := l.conn.Write(req); err != nil {
		return 0, nil, err
	}
	line, err := l.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	// "HTTP/1.1 201 Created\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, fmt.Errorf("loadconn: bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("loadconn: bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		h, err := l.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, fmt.Errorf("loadconn: bad header %q", h)
		}
		v = bytes.TrimSpace(v)
		switch {
		case strings.EqualFold(string(k), "Content-Length"):
			if length, err = strconv.Atoi(string(v)); err != nil {
				return 0, nil, fmt.Errorf("loadconn: bad Content-Length %q", v)
			}
		case strings.EqualFold(string(k), "Transfer-Encoding"):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		}
	}
	l.body.Reset()
	switch {
	case chunked:
		_, err = l.body.ReadFrom(httputil.NewChunkedReader(l.r))
		if err == nil {
			_, err = l.r.Discard(2) // the CRLF after the last chunk (no trailers)
		}
	case length >= 0:
		_, err = io.CopyN(&l.body, l.r, int64(length))
	default:
		return 0, nil, errors.New("loadconn: response without length cannot be kept alive")
	}
	if err != nil {
		return 0, nil, err
	}
	return status, l.body.Bytes(), nil
}

// Close closes the connection.
func (l *LoadConn) Close() error { return l.conn.Close() }
