package megaphone

import (
	"errors"
	"net/http"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/subjects"
)

// Sentinel errors of the package. Operations wrap them with %w.
var (
	// ErrBadAddress is a malformed address or a producer token that fails
	// verification.
	ErrBadAddress = errors.New("megaphone: malformed channel address")
	// ErrNotFound is an unknown or expired channel.
	ErrNotFound = errors.New("megaphone: channel not found")
	// ErrBusy is a second concurrent reader of a channel.
	ErrBusy = errors.New("megaphone: channel already has a reader")
	// ErrTimeout is a write that found no room in the buffer in time.
	ErrTimeout = errors.New("megaphone: timed out waiting for room in the channel buffer")
	// ErrBadRequest is a malformed request body or parameter.
	ErrBadRequest = errors.New("megaphone: bad request")
	// ErrProtocol is a /create that offers no protocol we speak.
	ErrProtocol = errors.New("megaphone: no supported protocol offered")
	// ErrMediaType is a body that is not application/json.
	ErrMediaType = errors.New("megaphone: content type must be application/json")
	// ErrTooLarge is a body or event over the configured limit.
	ErrTooLarge = errors.New("megaphone: body too large")
	// ErrBodyTimeout is a request body not received within http.body_timeout.
	ErrBodyTimeout = errors.New("megaphone: request body too slow")
	// ErrUnauthorized is an admin call without the right bearer token.
	ErrUnauthorized = errors.New("megaphone: missing or wrong admin token")
	// ErrUnavailable is a call while the gateway shuts down.
	ErrUnavailable = errors.New("megaphone: gateway is shutting down")
)

// errorTable maps each sentinel to its HTTP status and envelope code.
var errorTable = httpx.ErrorMap{
	{Err: ErrBadAddress, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrBadRequest, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrProtocol, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrNotFound, Status: http.StatusNotFound, Code: httpx.CodeNotFound},
	{Err: ErrBusy, Status: http.StatusConflict, Code: httpx.CodeBusy},
	{Err: ErrTimeout, Status: http.StatusServiceUnavailable, Code: httpx.CodeTimeout},
	{Err: ErrMediaType, Status: http.StatusUnsupportedMediaType, Code: httpx.CodeUnsupportedMediaType},
	{Err: ErrTooLarge, Status: http.StatusRequestEntityTooLarge, Code: httpx.CodeTooLarge},
	{Err: ErrBodyTimeout, Status: http.StatusRequestTimeout, Code: httpx.CodeTimeout},
	{Err: subjects.ErrTooLong, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrUnauthorized, Status: http.StatusUnauthorized, Code: httpx.CodeUnauthorized},
	{Err: ErrUnavailable, Status: http.StatusServiceUnavailable, Code: httpx.CodeUnavailable},
}

// StatusOf maps err to an HTTP status and envelope code; unknown errors
// are 500 INTERNAL_SERVER_ERROR.
func StatusOf(err error) (int, string) {
	if e, ok := errorTable.Lookup(err); ok {
		return e.Status, e.Code
	}
	return http.StatusInternalServerError, httpx.CodeInternal
}
