package pipe

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/protocol"
)

// Errors of the pipe core. Operations wrap them with %w; [httpError] maps
// them, and protocol.ErrShuttingDown (the gateway is stopping), to a
// status and the {"code","message"} envelope.
var (
	// ErrBadName means a namespace or channel name is empty, not valid
	// percent-encoding, or too long.
	ErrBadName = errors.New("pipe: bad name")
	// ErrBadHeader means a producer header that passes to the consumer
	// is too long, holds a control character (CR, LF, ...) or comes too
	// often (see [Meta]).
	ErrBadHeader = errors.New("pipe: bad header")
	// ErrLength means the producer's body is shorter or longer than the
	// Content-Length it announced.
	ErrLength = errors.New("pipe: body length differs from its Content-Length")
	// ErrTimeout means no partner came within pipe.timeout.
	ErrTimeout = errors.New("pipe: no partner within the timeout")
	// ErrGone means the channel or namespace was deleted while waiting.
	ErrGone = errors.New("pipe: channel deleted")
	// ErrNotFound means nobody waits in the namespace.
	ErrNotFound = errors.New("pipe: nobody waits here")
	// ErrPartnerLost means the other side went away during the transfer.
	ErrPartnerLost = errors.New("pipe: partner lost during the transfer")
	// ErrClientGone means this request's own client went away.
	ErrClientGone = errors.New("pipe: client went away")
	// ErrUnavailable means NATS or JetStream failed.
	ErrUnavailable = errors.New("pipe: nats unavailable")
)

// errLost means the queue lost a waiting party's entry (JetStream's
// memory storage emptied by a restart of every node holding it, or a
// partner that dropped the entry when this gateway did not answer its
// claim in time): nobody can find the party any more, so it is told to
// come again.
var errLost = fmt.Errorf("%w: this party's place in the queue was lost (as after a restart of the NATS servers); send the request again", ErrUnavailable)

// Codes beyond httpx's shared ones.
const (
	codePartnerLost = "PARTNER_LOST"
	codeClientGone  = "CLIENT_GONE"
)

// statusClientClosed is logged for requests whose client went away (no
// one reads the response).
const statusClientClosed = 499

// CodeGone is the pipes' own envelope code: the channel was deleted while
// the request waited (the shared codes are in httpx).
const CodeGone = "GONE"

var errorTable = httpx.ErrorMap{
	{Err: ErrBadName, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrBadHeader, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrLength, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrMismatch, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrBadParam, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrTimeout, Status: http.StatusRequestTimeout, Code: httpx.CodeTimeout},
	{Err: ErrGone, Status: http.StatusGone, Code: CodeGone},
	{Err: ErrNotFound, Status: http.StatusNotFound, Code: httpx.CodeNotFound},
	{Err: ErrPartnerLost, Status: http.StatusBadGateway, Code: codePartnerLost},
	{Err: ErrClientGone, Status: statusClientClosed, Code: codeClientGone},
	{Err: protocol.ErrShuttingDown, Status: http.StatusServiceUnavailable, Code: httpx.CodeUnavailable},
	{Err: ErrUnavailable, Status: http.StatusServiceUnavailable, Code: httpx.CodeUnavailable},
}

// httpError maps err to its HTTP status and envelope; unknown errors are
// 500 INTERNAL_SERVER_ERROR.
func httpError(err error) *httpx.Error {
	return errorTable.HTTPError(err, http.StatusInternalServerError, httpx.CodeInternal)
}
