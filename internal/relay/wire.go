package relay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go"
)

// NATS headers of relay messages.
const (
	hdrOp   = "Sb-Relay-Op"   // message kind, one of the op* constants
	hdrTry  = "Sb-Relay-Try"  // attempt number of an open, echoed by ack/busy
	hdrCtl  = "Sb-Relay-Ctl"  // the agent's control subject of the exchange
	hdrBody = "Sb-Relay-Body" // open/resp: "stream" when the body is not inline; ack: receiver subject; pull: receiver subject
	hdrHead = "Sb-Relay-Head" // length of the JSON head at the start of the data
	hdrCode = "Sb-Relay-Code" // err: envelope code
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
	Method string      `json:"m"`
	Path   string      `json:"p"`
	Query  string      `json:"q,omitempty"`
	Header http.Header `json:"h,omitempty"`
	// Length is the body length, -1 when unknown.
	Length int64 `json:"l"`
}

// respHead is the status line and headers of a relayed response.
type respHead struct {
	Status int         `json:"s"`
	Header http.Header `json:"h,omitempty"`
	// Length is the declared Content-Length, -1 when unknown.
	Length int64 `json:"l"`
}

// newMsg returns a message of kind op to subject.
func newMsg(subject, op string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(hdrOp, op)
	return m
}

// setFrame stores head as JSON followed by body in m.
func setFrame(m *nats.Msg, head any, body []byte) error {
	h, err := json.Marshal(head)
	if err != nil {
		return err
	}
	m.Header.Set(hdrHead, strconv.Itoa(len(h)))
	m.Data = append(h, body...)
	return nil
}

// frame decodes the JSON head of m into head and returns the body after it.
func frame(m *nats.Msg, head any) ([]byte, error) {
	n, err := strconv.Atoi(m.Header.Get(hdrHead))
	if err != nil || n < 0 || n > len(m.Data) {
		return nil, fmt.Errorf("%w: malformed frame", ErrBadRequest)
	}
	if err := json.Unmarshal(m.Data[:n], head); err != nil {
		return nil, fmt.Errorf("%w: malformed head: %v", ErrBadRequest, err)
	}
	return m.Data[n:], nil
}

// isNoResponders reports whether m is the server's "no responders" status.
func isNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}
