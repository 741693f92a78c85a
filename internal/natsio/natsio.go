package natsio

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Errors returned by senders and receivers.
var (
	// ErrPeerLost means the other side went silent for PeerTimeout.
	ErrPeerLost = errors.New("natsio: peer lost")
	// ErrCanceled means the receiver stopped reading before the end.
	ErrCanceled = errors.New("natsio: canceled by receiver")
	// ErrNoReceiver means nobody listens on the receiver's subject.
	ErrNoReceiver = errors.New("natsio: no receiver")
	// ErrClosed is returned on use after Close.
	ErrClosed = errors.New("natsio: closed")
	// ErrProtocol means a message was lost or out of order.
	ErrProtocol = errors.New("natsio: protocol error")
	// ErrForeignSubject means the peer handed over a subject that
	// Options.CheckPeer refused; nothing was published to it.
	ErrForeignSubject = errors.New("natsio: peer subject refused")
	// ErrNoCheck means Options.CheckPeer was not set.
	ErrNoCheck = errors.New("natsio: Options.CheckPeer is required")
)

// RemoteError is an error reported by the other side.
type RemoteError struct{ Reason string }

func (e *RemoteError) Error() string { return "natsio: remote error: " + e.Reason }

const (
	hdrSeq    = "Sb-Seq"
	hdrCtl    = "Sb-Ctl"
	hdrEOF    = "Sb-Eof"
	hdrErr    = "Sb-Err"
	hdrCredit = "Sb-Credit"
	hdrDone   = "Sb-Done"
	hdrCancel = "Sb-Cancel"
	hdrHello  = "Sb-Hello"
	hdrHB     = "Sb-Hb"
	hdrTrail  = "Sb-Trailer" // on the EOF message: its data is the trailer, not stream data
)

// Options tune a stream. Zero values mean the documented defaults.
type Options struct {
	// ChunkSize is the largest data payload per message. Default 256 KiB;
	// capped below the server's max_payload.
	ChunkSize int
	// Window is the most bytes in flight. Default 8 MiB.
	Window int
	// Heartbeat is the idle interval between keep-alives. Default 1 s.
	Heartbeat time.Duration
	// PeerTimeout is how long silence from the peer is tolerated.
	// Default 10 s.
	PeerTimeout time.Duration
	// Inbox, when set, returns a fresh subject for this side to subscribe
	// to instead of the connection's inbox, so NATS permissions can confine
	// a stream to a subject space (the relay builds its subjects with
	// internal/subjects). Default: nc.NewInbox().
	Inbox func() string
	// CheckPeer vets every subject the other side hands over before this
	// side publishes to it: the receiver subject given to [NewSender], and
	// the control and reply subjects of a sender's hello. It returns an
	// error for a subject outside the peer's own space (see
	// subjects.CheckPeer), so a peer cannot make this side publish, with
	// its own NATS rights, where the peer could not. Required: a stream
	// without it is refused with [ErrNoCheck].
	CheckPeer func(subject string) error
}

// checkPeer applies o.CheckPeer to subject.
func (o Options) checkPeer(subject string) error {
	if o.CheckPeer == nil {
		return ErrNoCheck
	}
	if err := o.CheckPeer(subject); err != nil {
		return fmt.Errorf("%w: %v", ErrForeignSubject, err)
	}
	return nil
}

// inbox returns a fresh subject for this side to subscribe to.
func (o Options) inbox(nc *nats.Conn) string {
	if o.Inbox == nil {
		return nc.NewInbox()
	}
	return o.Inbox()
}

func (o Options) withDefaults(maxPayload int64) Options {
	if o.ChunkSize <= 0 {
		o.ChunkSize = 256 << 10
	}
	if limit := int(maxPayload) - 4096; maxPayload > 0 && o.ChunkSize > limit {
		o.ChunkSize = limit
	}
	if o.Window <= 0 {
		o.Window = 8 << 20
	}
	if o.Window < 2*o.ChunkSize {
		o.Window = 2 * o.ChunkSize
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = time.Second
	}
	if o.PeerTimeout <= 0 {
		o.PeerTimeout = 10 * time.Second
	}
	return o
}
