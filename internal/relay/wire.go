package relay

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// NATS headers of relay messages.
const (
	hdrOp   = "Sb-Relay-Op"    // message kind, one of the op* constants
	hdrTry  = "Sb-Relay-Try"   // attempt number of an open, echoed by ack/busy
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

// lines splits n leading lines off data.
func lines(data []byte, n int) ([]string, []byte, error) {
	out := make([]string, n)
	for i := range out {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			return nil, nil, errMalformedHead
		}
		out[i], data = string(data[:j]), data[j+1:]
	}
	return out, data, nil
}

func decodeReq(data []byte) (reqHead, []byte, error) {
	f, rest, err := lines(data, 4)
	if err != nil {
		return reqHead{}, nil, err
	}
	h := reqHead{Method: f[0], Path: f[1], Query: f[2]}
	if h.Length, err = strconv.ParseInt(f[3], 10, 64); err != nil || h.Length < -1 {
		return reqHead{}, nil, errMalformedHead
	}
	h.Header, rest, err = parseHeader(rest)
	return h, rest, err
}

func decodeResp(data []byte) (respHead, []byte, error) {
	f, rest, err := lines(data, 2)
	if err != nil {
		return respHead{}, nil, err
	}
	var h respHead
	status, err1 := strconv.Atoi(f[0])
	length, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || status < 100 || status > 999 || length < -1 {
		return respHead{}, nil, errMalformedHead
	}
	h.Status, h.Length = status, length
	h.Header, rest, err = parseHeader(rest)
	return h, rest, err
}

// parseHeader reads header lines up to the empty line and returns the body
// after it.
func parseHeader(data []byte) (http.Header, []byte, error) {
	h := http.Header{}
	for {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			return nil, nil, errMalformedHead
		}
		line := data[:j]
		data = data[j+1:]
		if len(line) == 0 {
			return h, data, nil
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return nil, nil, errMalformedHead
		}
		name := string(line[:i])
		value := line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		h[name] = append(h[name], string(value))
	}
}

// newMsg returns a message of kind op to subject.
func newMsg(subject, op string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(hdrOp, op)
	return m
}

// isNoResponders reports whether m is the server's "no responders" status.
func isNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}
