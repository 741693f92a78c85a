package megaphone

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/protocol"
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
	// ErrNoLeader is a JetStream call refused or unanswered because the
	// cluster is briefly without a leader (a NATS node stopped, an election
	// runs) or the gateway's NATS connection is between servers. Nothing
	// was stored; the client may retry (503 with Retry-After).
	ErrNoLeader = errors.New("megaphone: JetStream cluster temporarily unavailable, retry")
)

// RetryAfter is the Retry-After header (seconds) of every 503 answer: a
// new stream leader is elected within a few seconds, a gateway that shuts
// down is replaced by another behind the load balancer.
const RetryAfter = "1"

// noLeaderCodes are the JetStream API error codes of a cluster without a
// leader for the request: 10008 JetStream system temporarily unavailable,
// 10009 cluster can not handle request (not leader), 10118 and 10194
// stream offline, 10163 expected last sequence per subject temporarily
// unavailable (a compare-and-set just after a leader change), and 10039 /
// 10076 JetStream not enabled (for the account), which a node answers
// while its JetStream is still starting (the gateway checked JetStream at
// start, so at run time it is transient).
var noLeaderCodes = []jetstream.ErrorCode{10008, 10009, 10118, 10194, 10163, 10039, 10076}

// isNoLeader reports whether err is a JetStream failure of a cluster that
// is briefly without a leader: one of noLeaderCodes, no responders (no
// stream leader subscribed), or a request that timed out (the request
// reached a leader that went away, or none was elected in time), or a NATS
// connection between servers.
func isNoLeader(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return slices.Contains(noLeaderCodes, apiErr.ErrorCode)
	}
	for _, e := range []error{jetstream.ErrNoStreamResponse, nats.ErrNoResponders, nats.ErrTimeout,
		context.DeadlineExceeded, nats.ErrConnectionReconnecting, nats.ErrDisconnected} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// noLeader wraps err with ErrNoLeader when it is a failure of a cluster
// without a leader (see isNoLeader), so it maps to 503; otherwise it
// returns err unchanged.
func noLeader(err error) error {
	if err == nil || errors.Is(err, ErrNoLeader) || !isNoLeader(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrNoLeader, err)
}

// CodeBusy is Megaphone's own envelope code: a second reader of a channel
// (the shared codes are in httpx).
const CodeBusy = "BUSY"

// errorTable maps each sentinel to its HTTP status and envelope code.
var errorTable = httpx.ErrorMap{
	{Err: ErrBadAddress, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrBadRequest, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrProtocol, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrNotFound, Status: http.StatusNotFound, Code: httpx.CodeNotFound},
	{Err: ErrBusy, Status: http.StatusConflict, Code: CodeBusy},
	{Err: ErrTimeout, Status: http.StatusServiceUnavailable, Code: httpx.CodeTimeout},
	{Err: ErrMediaType, Status: http.StatusUnsupportedMediaType, Code: httpx.CodeUnsupportedMediaType},
	{Err: ErrTooLarge, Status: http.StatusRequestEntityTooLarge, Code: httpx.CodeTooLarge},
	{Err: ErrBodyTimeout, Status: http.StatusRequestTimeout, Code: httpx.CodeTimeout},
	{Err: subjects.ErrTooLong, Status: http.StatusBadRequest, Code: httpx.CodeBadRequest},
	{Err: ErrUnauthorized, Status: http.StatusUnauthorized, Code: httpx.CodeUnauthorized},
	{Err: protocol.ErrShuttingDown, Status: http.StatusServiceUnavailable, Code: httpx.CodeUnavailable},
	{Err: ErrNoLeader, Status: http.StatusServiceUnavailable, Code: httpx.CodeUnavailable},
}

// StatusOf maps err to an HTTP status and envelope code. A JetStream
// failure of a cluster without a leader (see ErrNoLeader), wrapped or not,
// is 503 SERVICE_UNAVAILABLE; other unknown errors are 500
// INTERNAL_SERVER_ERROR. Every 503 is answered with Retry-After:
// [RetryAfter].
func StatusOf(err error) (int, string) {
	if e, ok := errorTable.Lookup(noLeader(err)); ok {
		return e.Status, e.Code
	}
	return http.StatusInternalServerError, httpx.CodeInternal
}
