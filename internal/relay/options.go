package relay

import (
	"log/slog"
	"time"

	"github.com/switchboard/switchboard/internal/natsio"
)

// Defaults of [Options].
const (
	DefaultAgentWait       = 5 * time.Second
	DefaultAckTimeout      = 2 * time.Second
	DefaultResponseTimeout = 30 * time.Second
	DefaultHeartbeat       = time.Second
	DefaultPeerTimeout     = 4 * time.Second
	DefaultInlineMax       = 64 << 10
)

// Options tune a [Client] or [Server]. Zero values mean the defaults.
type Options struct {
	// AgentWait bounds the wait for an agent of the upstream to appear.
	// Default 5 s. Caller only.
	AgentWait time.Duration
	// AckTimeout bounds the wait for the chosen agent to accept a request
	// before another is asked. Default 2 s. Caller only.
	AckTimeout time.Duration
	// ResponseTimeout bounds the wait for the response head once the
	// request body was delivered. Default 30 s. Caller only.
	ResponseTimeout time.Duration
	// Heartbeat is the keep-alive interval of an exchange and its streams.
	// Default 1 s.
	Heartbeat time.Duration
	// PeerTimeout is how long the other side may stay silent before it
	// counts as lost. Default 4 s.
	PeerTimeout time.Duration
	// InlineMax is the largest body of known size sent inside the open or
	// response message instead of as a stream. Default 64 KiB.
	InlineMax int
	// Window is the natsio flow-control window of body streams; 0 means
	// natsio's default.
	Window int
	// Logger receives debug and warning logs; nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&o.AgentWait, DefaultAgentWait)
	set(&o.AckTimeout, DefaultAckTimeout)
	set(&o.ResponseTimeout, DefaultResponseTimeout)
	set(&o.Heartbeat, DefaultHeartbeat)
	set(&o.PeerTimeout, DefaultPeerTimeout)
	if o.InlineMax <= 0 {
		o.InlineMax = DefaultInlineMax
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// stream returns the natsio options of a body stream with upstream's
// inbox prefix; check vets the subjects the other side hands over.
func (o Options) stream(prefix string, check func(string) error) natsio.Options {
	return natsio.Options{
		CheckPeer:   check,
		ChunkSize:   1 << 20, // natsio caps it below max_payload
		Window:      o.Window,
		Heartbeat:   o.Heartbeat,
		PeerTimeout: o.PeerTimeout,
		InboxPrefix: prefix,
	}
}
