package middleman

import (
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/switchboard/switchboard/internal/httpx"
	"github.com/switchboard/switchboard/internal/protocol"
)

// Sentinel errors. Command errors reach the client as a `PUB ERROR` frame
// whose body is built by [WireText]; handshake and connection errors close
// the WebSocket with the code of [CloseCode].
var (
	// ErrMalformed: a frame that does not parse (wrapped with the reason).
	ErrMalformed = errors.New("middleman: malformed frame")
	// ErrBinary: a binary WebSocket message after the handshake.
	ErrBinary = errors.New("middleman: binary frames are not supported")
	// ErrKeyTooLong: a key longer than [MaxKeyLen] bytes.
	ErrKeyTooLong = errors.New("middleman: key too long")
	// ErrUnknownCommand: a command this server does not know.
	ErrUnknownCommand = errors.New("middleman: unknown command")
	// ErrNotTrusted: an untrusted connection used a command or key it may not.
	ErrNotTrusted = errors.New("middleman: not trusted")
	// ErrNoResponder: a REQ found no EREQ responder.
	ErrNoResponder = errors.New("middleman: no responder")
	// ErrTimeout: a REQ (or a remote INT) got no answer in time.
	ErrTimeout = errors.New("middleman: timeout")
	// ErrResponderGone: the responder of a pending REQ disconnected.
	ErrResponderGone = errors.New("middleman: responder disconnected")
	// ErrUnknownCID: INT for a connection id no gateway holds.
	ErrUnknownCID = errors.New("middleman: unknown connection id")
	// ErrMissingHeader: a required header (Rid, Forcid, Setuid) is absent.
	ErrMissingHeader = errors.New("middleman: missing header")
	// ErrBadRid: a RES whose Rid names no request that still waits: not
	// issued by Switchboard, forged, already answered or timed out.
	ErrBadRid = errors.New("middleman: unknown Rid")
	// ErrTooLarge: a relayed message would exceed the NATS payload limit.
	ErrTooLarge = errors.New("middleman: message too large")
	// ErrTooManyPending: the connection already awaits too many answers.
	ErrTooManyPending = errors.New("middleman: too many pending requests")
	// ErrInternal: NATS or the trust store failed.
	ErrInternal = errors.New("middleman: internal error")

	// ErrBadKey: the handshake key is not a configured key.
	ErrBadKey = errors.New("middleman: invalid key")
	// ErrBinaryKey: the handshake key came in a binary message.
	ErrBinaryKey = errors.New("middleman: binary handshake")
	// ErrHandshakeTimeout: no key within the handshake timeout.
	ErrHandshakeTimeout = errors.New("middleman: handshake timeout")
	// ErrInvalidUTF8: a text message that is not UTF-8.
	ErrInvalidUTF8 = errors.New("middleman: text message is not UTF-8")
	// ErrSlowConsumer: the connection's send queue overflowed.
	ErrSlowConsumer = errors.New("middleman: slow consumer")
	// ErrOrigin: the upgrade's Origin is not allowed.
	ErrOrigin = errors.New("middleman: origin not allowed")
)

// WebSocket close codes used by the protocol.
const (
	CloseNormal      = 1000
	CloseGoingAway   = 1001
	CloseInvalidData = 1007
	ClosePolicy      = 1008
	CloseTooBig      = 1009
	CloseInternal    = 1011
)

// errInfo is one row of the error table.
type errInfo struct {
	err    error
	wire   string // PUB ERROR body prefix
	reason string // metric label
	close  int    // WebSocket close code (connection errors)
	status int    // HTTP status (upgrade errors)
	code   string // HTTP envelope code
}

// errTable maps every sentinel to its wire text, metric reason, close code
// and HTTP status. It is the only place these mappings live.
var errTable = []errInfo{
	{err: ErrMalformed, wire: "Malformed frame", reason: "malformed"},
	{err: ErrBinary, wire: "Binary frames are not supported", reason: "binary"},
	{err: ErrKeyTooLong, wire: "Key too long", reason: "key_too_long"},
	{err: ErrUnknownCommand, wire: "Unknown command", reason: "unknown_command"},
	{err: ErrNotTrusted, wire: "Not trusted", reason: "not_trusted"},
	{err: ErrNoResponder, wire: "No responder for", reason: "no_responder"},
	{err: ErrTimeout, wire: "Timeout", reason: "timeout"},
	{err: ErrResponderGone, wire: "Responder disconnected", reason: "responder_gone"},
	{err: ErrUnknownCID, wire: "Unknown Forcid", reason: "unknown_cid"},
	{err: ErrMissingHeader, wire: "Missing header", reason: "missing_header"},
	{err: ErrBadRid, wire: "Unknown Rid", reason: "bad_rid"},
	{err: ErrTooLarge, wire: "Too large", reason: "too_large"},
	{err: ErrTooManyPending, wire: "Too many pending", reason: "too_many_pending"},
	{err: ErrInternal, wire: "Internal error", reason: "internal"},
	{err: ErrBadKey, reason: "bad_key", close: ClosePolicy},
	{err: ErrBinaryKey, reason: "bad_key", close: ClosePolicy},
	{err: ErrInvalidUTF8, reason: "invalid_utf8", close: CloseInvalidData},
	{err: ErrHandshakeTimeout, reason: "handshake_timeout", close: ClosePolicy},
	{err: ErrSlowConsumer, reason: "slow_consumer", close: ClosePolicy},
	{err: ErrOrigin, reason: "origin", status: http.StatusForbidden, code: "FORBIDDEN"},
	{err: protocol.ErrShuttingDown, reason: "shutting_down", close: CloseGoingAway,
		status: http.StatusServiceUnavailable, code: httpx.CodeUnavailable},
}

func lookup(err error) errInfo {
	for _, e := range errTable {
		if errors.Is(err, e.err) {
			return e
		}
	}
	return errInfo{err: ErrInternal, wire: "Internal error", reason: "internal", close: CloseInternal,
		status: http.StatusInternalServerError, code: httpx.CodeInternal}
}

// CommandError is a refused or failed command; it names the command and
// key the client sent, as the original's error bodies do.
type CommandError struct {
	Cmd string
	Key string
	Err error
}

func (e *CommandError) Error() string { return WireText(e) }

func (e *CommandError) Unwrap() error { return e.Err }

func cmdErr(f *Frame, err error) error { return &CommandError{Cmd: f.Cmd, Key: f.Key, Err: err} }

// WireText is the body of the `PUB ERROR` frame for err: for a command
// error "<reason> CMD key" (e.g. "Not trusted PUB news", "No responder for
// REQ calc", "Timeout REQ calc", "Key too long PUB xxxx…"); for a malformed
// frame "Malformed frame: <why>". A key over [MaxKeyLen] is shown by its
// first [keyEcho] bytes and "…".
func WireText(err error) string {
	info := lookup(err)
	var ce *CommandError
	if errors.As(err, &ce) {
		return info.wire + " " + ce.Cmd + " " + echoKey(ce.Key)
	}
	if detail, ok := strings.CutPrefix(err.Error(), info.err.Error()+": "); ok {
		return info.wire + ": " + detail
	}
	return info.wire
}

// keyEcho is how many bytes of a key over [MaxKeyLen] an error shows.
const keyEcho = 32

// echoKey is key as errors show it: whole up to [MaxKeyLen] bytes, else
// its first keyEcho bytes, cut at a rune boundary (the error goes out in
// a text message), and "…".
func echoKey(key string) string {
	if len(key) <= MaxKeyLen {
		return key
	}
	n := keyEcho
	for n > 0 && !utf8.RuneStart(key[n]) {
		n--
	}
	return key[:n] + "…"
}

// Reason is the bounded metric label of err.
func Reason(err error) string { return lookup(err).reason }

// CloseCode is the WebSocket close code for a connection-ending err.
func CloseCode(err error) int { return lookup(err).close }

// HTTPError is the status and envelope code of an upgrade refused with err.
func HTTPError(err error) (status int, code string) {
	info := lookup(err)
	return info.status, info.code
}
