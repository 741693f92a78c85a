package relay

import (
	"context"
	"errors"
	"net/http"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/protocol"
)

// Errors of the relay. They are wrapped with detail; [HTTPError] maps them
// to the status and envelope code a client sees. A client or ingress that
// is stopping fails with [protocol.ErrShuttingDown] (503 UNAVAILABLE).
var (
	// ErrNoAgent means no agent of the upstream appeared within AgentWait,
	// or none accepted the request.
	ErrNoAgent = errors.New("relay: no agent available")
	// ErrTimeout means the response head did not arrive in time.
	ErrTimeout = errors.New("relay: upstream response timeout")
	// ErrUpstreamUnreachable means the agent could not reach its target.
	ErrUpstreamUnreachable = errors.New("relay: upstream unreachable")
	// ErrAgentLost means the agent serving the request went silent.
	ErrAgentLost = errors.New("relay: agent lost")
	// ErrUpstreamBroken means the target's response body failed midway.
	ErrUpstreamBroken = errors.New("relay: upstream response broken")
	// ErrUnauthorized means the API key of the upstream was missing or wrong.
	ErrUnauthorized = errors.New("relay: unauthorized")
	// ErrBadRequest means the request cannot be relayed as it is.
	ErrBadRequest = errors.New("relay: bad request")
	// errCallerLost ends an agent-side exchange whose caller went silent.
	errCallerLost = errors.New("relay: caller lost")
)

// The relay's own envelope codes (the shared ones are in httpx).
const (
	CodeNoAgent             = "NO_AGENT"
	CodeUpstreamUnreachable = "UPSTREAM_UNREACHABLE"
	CodeAgentLost           = "AGENT_LOST"
)

// errorTable maps each sentinel to its status and envelope code.
var errorTable = httpx.ErrorMap{
	{Err: ErrNoAgent, Status: http.StatusServiceUnavailable, Code: CodeNoAgent},
	{Err: ErrTimeout, Status: http.StatusGatewayTimeout, Code: httpx.CodeTimeout},
	{Err: ErrUpstreamUnreachable, Status: http.StatusBadGateway, Code: CodeUpstreamUnreachable},
	{Err: ErrAgentLost, Status: http.StatusBadGateway, Code: CodeAgentLost},
	{Err: ErrUpstreamBroken, Status: http.StatusBadGateway, Code: CodeUpstreamUnreachable},
	{Err: ErrUnauthorized, Status: http.StatusUnauthorized, Code: httpx.CodeUnauthorized},
	{Err: ErrBadRequest, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: protocol.ErrShuttingDown, Status: http.StatusServiceUnavailable, Code: httpx.CodeUnavailable},
	{Err: context.Canceled, Status: http.StatusServiceUnavailable, Code: httpx.CodeUnavailable},
}

// HTTPError maps err to the status and {"code","message"} a client sees.
// Unknown errors are 502 UPSTREAM_UNREACHABLE: the relay could not get a
// response.
func HTTPError(err error) *httpx.Error {
	return errorTable.HTTPError(err, http.StatusBadGateway, CodeUpstreamUnreachable)
}

// WriteError renders err with [HTTPError].
func WriteError(w http.ResponseWriter, err error) {
	he := HTTPError(err)
	httpx.WriteError(w, he.Status, he.Code, he.Message)
}

// codeError turns an error code sent by an agent back into a sentinel.
func codeError(code string) error {
	for _, e := range errorTable {
		if e.Code == code && e.Err != ErrUpstreamBroken {
			return e.Err
		}
	}
	return ErrUpstreamUnreachable
}
