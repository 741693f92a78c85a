package gateway

import "errors"

var (
	// ErrNATSClosed means the gateway's NATS connection closed for good
	// (nats.go gave up on it: a fatal server error, credentials refused
	// twice) outside a shutdown. The gateway cannot serve any more.
	ErrNATSClosed = errors.New("gateway: nats connection closed for good")
	// ErrStart means start-up failed for good: NATS could not be reached
	// in time or provisioning failed with an error that retrying cannot
	// fix.
	ErrStart = errors.New("gateway: start-up failed")
)

// Envelope codes of the operational routes.
const (
	codeNotReady    = "NOT_READY"
	codeNATSClosed  = "NATS_CLOSED"
	codeStartFailed = "START_FAILED"
)
