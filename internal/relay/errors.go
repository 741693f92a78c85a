package relay

import (
	"context"
	"errors"
	"net/http"

	"github.com/switchboard/switchboard/internal/httpx"
)

// Errors of the relay. They are wrapped with detail; [HTTPError] maps them
// to the status and envelope code a client sees.
var (
	// ErrNoAgent means no agent of the upstream appeared within AgentWait,
	// or none accepted the request.
	ErrNoAgent = errors.New("no agent available")
	// ErrTimeout means the response head did not arrive in time.
	ErrTimeout = errors.New("upstream response timeout")
	// ErrUpstreamUnreachable means the agent could not reach its target.
	ErrUpstreamUnreachable = errors.New("upstream unreachable")
	// ErrAgentLost means the agent serving the request went silent.
	ErrAgentLost = errors.New("agent lost")
	// ErrUpstreamBroken means the target's response body failed midway.
	ErrUpstreamBroken = errors.New("upstream response broken")
	// ErrUnauthorized means the API key of the upstream was missing or wrong.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrBadRequest means the request cannot be relayed as it is.
	ErrBadRequest = errors.New("bad request")
	// ErrShuttingDown means the gateway or agent is stopping.
	ErrShuttingDown = errors.New("shutting down")
	// errCallerLost ends an agent-side exchange whose caller went silent.
	errCallerLost = errors.New("caller lost")
)

// errorTable maps each sentinel to its status and envelope code.
var errorTable = []struct {
	err    error
	status int
	code   string
}{
	{ErrNoAgent, http.StatusServiceUnavailable, httpx.CodeNoAgent},
	{ErrTimeout, http.StatusGatewayTimeout, httpx.CodeTimeout},
	{ErrUpstreamUnreachable, http.StatusBadGateway, httpx.CodeUpstreamUnreachable},
	{ErrAgentLost, http.StatusBadGateway, httpx.CodeAgentLost},
	{ErrUpstreamBroken, http.StatusBadGateway, httpx.CodeUpstreamUnreachable},
	{ErrUnauthorized, http.StatusUnauthorized, httpx.CodeUnauthorized},
	{ErrBadRequest, http.StatusBadRequest, httpx.CodeBadRequest},
	{ErrShuttingDown, http.StatusServiceUnavailable, httpx.CodeUnavailable},
	{context.Canceled, http.StatusServiceUnavailable, httpx.CodeUnavailable},
}

// HTTPError maps err to the status and {"code","message"} a client sees.
// Unknown errors are 502 UPSTREAM_UNREACHABLE: the relay could not get a
// response.
func HTTPError(err error) *httpx.Error {
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return httpx.NewError(e.status, e.code, err.Error())
		}
	}
	return httpx.NewError(http.StatusBadGateway, httpx.CodeUpstreamUnreachable, err.Error())
}

// WriteError renders err with [HTTPError].
func WriteError(w http.ResponseWriter, err error) {
	he := HTTPError(err)
	httpx.WriteError(w, he.Status, he.Code, he.Message)
}

// codeError turns an error code sent by an agent back into a sentinel.
func codeError(code string) error {
	for _, e := range errorTable {
		if e.code == code && e.err != ErrUpstreamBroken {
			return e.err
		}
	}
	return ErrUpstreamUnreachable
}
