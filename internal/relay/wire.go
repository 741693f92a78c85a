package relay

import (
	"bytes"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// NATS headers of relay messages.
const (
	hdrOp   = "Sb-Relay-Op"    // message kind, one of the op* constants
	hdrTry  = "Sb-Relay-Try"   // attempt of an open, a value no other attempt of the caller has; echoed by ack/busy/resp/err
	hdrCtl  = "Sb-Relay-Ctl"   // the agent's control subject of the exchange
	hdrBody = "Sb-Relay-Body"  // open/resp: "stream" when the body is not inline; ack: receiver subject; pull: receiver subject
	hdrCode = "Sb-Relay-Code"  // err: envelope code
	hdrAck  = "Sb-Relay-Ack"   // open: the caller's ack timeout in milliseconds
	hdrRepl = "Sb-Relay-Reply" // cancel broadcast: the caller's reply subject
)

// Message kinds.
const (
	opOpen    = "open"    // caller → endpoint
	opAck     = "ack"     // agent → R
	opBusy    = "busy"    // agent → R: at its concurrency limit
	opResp    = "resp"    // agent → R: response head (+ inline body)
	opStarted = "started" // agent → R: response body stream connected
	opErr     = "err"     // agent → R
	opKA      = "ka"      // both ways, keep-alive
	opCancel  = "cancel"  // caller → C
	opPull    = "pull"    // caller → C: stream the body to this receiver
)

const bodyStream = "stream"

// reqHead is the request line and headers of a relayed request.
type reqHead struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	// Length is the body length, -1 when unknown.
	Length int64
}

// respHead is the status line and headers of a relayed response.
type respHead struct {
	Status int
	Header http.Header
	// Length is the declared Content-Length, -1 when unknown.
	Length int64
}

// A head travels as text lines, then an empty line, then the inline body:
//
//	request:  METHOD \n PATH \n QUERY \n LENGTH \n (NAME ": " VALUE \n)* \n BODY
//	response: STATUS \n LENGTH \n (NAME ": " VALUE \n)* \n BODY
//
// HTTP forbids CR and LF in all of these, and ':' in header names, so the
// encoding is unambiguous; encode refuses anything else.
var errHeadSyntax = fmt.Errorf("%w: head holds CR, LF or a bad header name", ErrBadRequest)

func (h *reqHead) encode(body []byte) ([]byte, error) {
	b := make([]byte, 0, 256+len(body))
	for _, f := range []string{h.Method, h.Path, h.Query} {
		if strings.ContainsAny(f, "\r\n") {
			return nil, errHeadSyntax
		}
		b = append(append(b, f...), '\n')
	}
	b = append(strconv.AppendInt(b, h.Length, 10), '\n')
	return appendHeader(b, h.Header, body)
}

func (h *respHead) encode(body []byte) ([]byte, error) {
	b := make([]byte, 0, 256+len(body))
	b = append(strconv.AppendInt(b, int64(h.Status), 10), '\n')
	b = append(strconv.AppendInt(b, h.Length, 10), '\n')
	return appendHeader(b, h.Header, body)
}

func appendHeader(b []byte, h http.Header, body []byte) ([]byte, error) {
	for name, values := range h {
		if name == "" || strings.ContainsAny(name, ":\r\n") {
			return nil, errHeadSyntax
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n") {
				return nil, errHeadSyntax
			}
			b = append(append(append(append(b, name...), ": "...), v...), '\n')
		}
	}
	return append(append(b, '\n'), body...), nil
}

var errMalformedHead = fmt.Errorf("%w: malformed head", ErrBadRequest)

// splitHead finds the end of a head: n fixed lines, then header lines up to
// an empty line. It returns the head as one string (one allocation that
// every field and header of the head then shares) and the body after it.
func splitHead(data []byte, n int) (string, []byte, error) {
	i := 0
	for k := 0; k < n; k++ {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return "", nil, errMalformedHead
		}
		i += j + 1
	}
	for {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return "", nil, errMalformedHead
		}
		i += j + 1
		if j == 0 {
			return string(data[:i]), data[i:], nil
		}
	}
}

// line cuts the first line off s.
func line(s string) (string, string) {
	l, rest, _ := strings.Cut(s, "\n")
	return l, rest
}

func decodeReq(data []byte) (reqHead, []byte, error) {
	s, body, err := splitHead(data, 4)
	if err != nil {
		return reqHead{}, nil, err
	}
	var h reqHead
	var length string
	h.Method, s = line(s)
	h.Path, s = line(s)
	h.Query, s = line(s)
	length, s = line(s)
	if h.Length, err = strconv.ParseInt(length, 10, 64); err != nil || h.Length < -1 {
		return reqHead{}, nil, errMalformedHead
	}
	if h.Header, err = parseHeaderLines(s); err != nil {
		return reqHead{}, nil, err
	}
	return h, body, nil
}

func decodeResp(data []byte) (respHead, []byte, error) {
	s, body, err := splitHead(data, 2)
	if err != nil {
		return respHead{}, nil, err
	}
	var f0, f1 string
	f0, s = line(s)
	f1, s = line(s)
	status, err1 := strconv.Atoi(f0)
	length, err2 := strconv.ParseInt(f1, 10, 64)
	if err1 != nil || err2 != nil || status < 100 || status > 999 || length < -1 {
		return respHead{}, nil, errMalformedHead
	}
	h := respHead{Status: status, Length: length}
	if h.Header, err = parseHeaderLines(s); err != nil {
		return respHead{}, nil, err
	}
	return h, body, nil
}

// parseHeader reads header lines up to the empty line and returns the body
// after it.
func parseHeader(data []byte) (http.Header, []byte, error) {
	s, body, err := splitHead(data, 0)
	if err != nil {
		return nil, nil, err
	}
	h, err := parseHeaderLines(s)
	return h, body, err
}

// parseHeaderLines parses "NAME: VALUE\n" lines ending with an empty line
// (splitHead checked that it is there). Names and values are substrings of
// s and single values share one backing array: a few allocations per head
// instead of a few per header.
func parseHeaderLines(s string) (http.Header, error) {
	n := strings.Count(s, "\n") - 1
	h := make(http.Header, n)
	vals := make([]string, n)
	for k := 0; ; k++ {
		var l string
		l, s = line(s)
		if l == "" {
			return h, nil
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" {
			return nil, errMalformedHead
		}
		// Canonical, as net/http stores names: every check by name (hop-
		// by-hop removal, Content-Length, Expect) must see "content-length"
		// as Content-Length. A canonical name is returned as it is.
		name = textproto.CanonicalMIMEHeaderKey(name)
		value = strings.TrimPrefix(value, " ")
		if prior, ok := h[name]; ok {
			h[name] = append(prior, value)
			continue
		}
		vals[k] = value
		h[name] = vals[k : k+1 : k+1]
	}
}

// opValues holds the hdrOp value of every message kind, shared by all
// messages: header values are only read once set (capacity = length, so
// an append copies).
var opValues = func() map[string][]string {
	vals := map[string][]string{}
	for _, op := range []string{opOpen, opAck, opBusy, opResp, opStarted, opErr, opKA, opCancel, opPull} {
		vals[op] = []string{op}
	}
	return vals
}()

// msgHeaders is room for the headers of a relay message (op, attempt,
// control subject, body or code): one allocation of the map, none later.
const msgHeaders = 4

// newMsg returns a message of kind op to subject.
func newMsg(subject, op string) *nats.Msg {
	h := make(nats.Header, msgHeaders)
	if v, ok := opValues[op]; ok {
		h[hdrOp] = v
	} else {
		h[hdrOp] = []string{op}
	}
	return &nats.Msg{Subject: subject, Header: h}
}

// isNoResponders reports whether m is the server's "no responders" status.
func isNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}
