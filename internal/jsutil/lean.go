package jsutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// Hot paths send JetStream requests as plain NATS requests with prebuilt
// bodies and read the common successful answer without decoding it; any
// other answer is decoded as the jetstream package does, so its errors
// (with *jetstream.APIError inside) are the same.

var (
	ackPrefix = []byte(`{"stream":"`)
	ackSeq    = []byte(`","seq":`)
	errKey    = []byte(`"error"`)
	successOK = []byte(`"success":true`)
)

// PubAck returns the stream sequence of a JetStream publish
// acknowledgement, or the error the answer reports. An acknowledgement
// starts {"stream":"<name>","seq":N: a stream name cannot hold a quote,
// so the first `","seq":` ends it.
func PubAck(data []byte) (uint64, error) {
	if bytes.HasPrefix(data, ackPrefix) && !bytes.Contains(data, errKey) {
		if i := bytes.Index(data, ackSeq); i > len(ackPrefix) {
			rest := data[i+len(ackSeq):]
			n := 0
			for n < len(rest) && n < 20 && rest[n] >= '0' && rest[n] <= '9' {
				n++
			}
			if n > 0 && n < len(rest) && (rest[n] == ',' || rest[n] == '}') {
				if seq, err := strconv.ParseUint(string(rest[:n]), 10, 64); err == nil && seq > 0 {
					return seq, nil
				}
			}
		}
	}
	var ack struct {
		Error    *jetstream.APIError `json:"error"`
		Stream   string              `json:"stream"`
		Sequence uint64              `json:"seq"`
	}
	switch {
	case json.Unmarshal(data, &ack) != nil:
		return 0, jetstream.ErrInvalidJSAck
	case ack.Error != nil:
		return 0, fmt.Errorf("nats: %w", ack.Error)
	case ack.Stream == "" || ack.Sequence == 0:
		return 0, jetstream.ErrInvalidJSAck
	}
	return ack.Sequence, nil
}

// ErrCodeSequenceNotFound is nats-server's answer to a message delete of
// a sequence the stream does not hold (JSSequenceNotFoundErrF; nats.go
// names no constant for it).
const ErrCodeSequenceNotFound jetstream.ErrorCode = 10043

// ErrUnsuccessful is a JetStream API answer that reports neither success
// nor an error (a delete of a message already gone can answer so).
var ErrUnsuccessful = errors.New("JetStream answer without success")

// Success returns nil when data is a JetStream API answer that reports
// success ({..."success":true...}, no error), else the error it reports.
func Success(data []byte) error {
	if bytes.Contains(data, successOK) && !bytes.Contains(data, errKey) {
		return nil
	}
	var resp struct {
		Success bool                `json:"success"`
		Error   *jetstream.APIError `json:"error"`
	}
	switch {
	case json.Unmarshal(data, &resp) != nil:
		return fmt.Errorf("unreadable JetStream answer %.100q", data)
	case resp.Error != nil:
		return fmt.Errorf("nats: %w", resp.Error)
	case !resp.Success:
		return fmt.Errorf("%w: %.100q", ErrUnsuccessful, data)
	}
	return nil
}
