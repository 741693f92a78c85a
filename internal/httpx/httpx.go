// Package httpx holds the HTTP pieces shared by every Switchboard binary:
// the JSON error envelope and streaming helpers. It does not import echo,
// so the agent binary can use it.
package httpx

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Error codes of the {"code","message"} envelope that the gateway and
// several protocols share; a protocol's own codes live next to its error
// table (relay.CodeNoAgent, megaphone.CodeBusy, pipe.CodeGone).
const (
	CodeBadRequest           = "BAD_REQUEST"
	CodeUnauthorized         = "UNAUTHORIZED"
	CodeNotFound             = "NOT_FOUND"
	CodeTimeout              = "TIMEOUT"
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	CodeTooLarge             = "PAYLOAD_TOO_LARGE"
	CodeInternal             = "INTERNAL_SERVER_ERROR"
	CodeUnavailable          = "SERVICE_UNAVAILABLE"
)

// ErrorBody is the JSON error envelope.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error is an error that knows its HTTP status and envelope code. Cores
// return it (or wrap it) and adapters render it with [WriteError].
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// NewError returns an *Error.
func NewError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// WriteError writes status and the envelope as JSON. The message is made
// one line (see [OneLine]): errors joined with errors.Join or quoting
// upstream text may hold line breaks, and clients log messages as lines.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Code: code, Message: OneLine(message)})
}

// OneLine replaces every run of line breaks (CR, LF, and the Unicode line
// and paragraph separators) in s with one space.
func OneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\u2028\u2029") {
		return s
	}
	var sb strings.Builder
	sb.Grow(len(s))
	inBreak := false
	for _, r := range s {
		if r == '\r' || r == '\n' || r == '\u2028' || r == '\u2029' {
			if !inBreak {
				sb.WriteByte(' ')
			}
			inBreak = true
			continue
		}
		inBreak = false
		sb.WriteRune(r)
	}
	return sb.String()
}

// ErrorMapping maps one sentinel error to its HTTP status and code.
type ErrorMapping struct {
	Err    error
	Status int
	Code   string
}

// ErrorMap is a package's table from sentinel errors to status and code,
// searched in order with errors.Is.
type ErrorMap []ErrorMapping

// Lookup returns the first mapping err matches.
func (m ErrorMap) Lookup(err error) (ErrorMapping, bool) {
	for _, e := range m {
		if errors.Is(err, e.Err) {
			return e, true
		}
	}
	return ErrorMapping{}, false
}

// HTTPError renders err as an *Error through the map, or with fallback
// status and code when nothing matches.
func (m ErrorMap) HTTPError(err error, fallbackStatus int, fallbackCode string) *Error {
	if e, ok := m.Lookup(err); ok {
		return NewError(e.Status, e.Code, err.Error())
	}
	return NewError(fallbackStatus, fallbackCode, err.Error())
}
