package middleman

import (
	"time"

	"github.com/switchboard/switchboard/internal/subjects"
)

// MaxKeyLen is the longest key, in bytes, of any command and of the
// handshake. A longer key is refused before any NATS call: a command with
// `PUB ERROR Key too long CMD <start>…`, the handshake with close 1008.
const MaxKeyLen = subjects.MaxNameLen

// Defaults of [Options].
const (
	DefaultRequestTimeout   = 30 * time.Second
	DefaultMaxFrame         = 1 << 20
	DefaultPingInterval     = 25 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultSendQueue        = 4096
)

// Options configure a [Hub]. Zero values mean the documented defaults.
type Options struct {
	// ServiceKeys are trusted handshake keys.
	ServiceKeys []string
	// ClientKeys are untrusted handshake keys.
	ClientKeys []string
	// SuperKeys are trusted keys whose connections receive every PUB.
	SuperKeys []string
	// RequestTimeout bounds the wait for a RES (default 30 s).
	RequestTimeout time.Duration
	// MaxFrame is the largest accepted frame in bytes (default 1 MiB).
	MaxFrame int
	// PingInterval is the WebSocket ping period (default 25 s).
	PingInterval time.Duration
	// HandshakeTimeout bounds the wait for the key (default 10 s).
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one batch of writes to a client (default 10 s).
	WriteTimeout time.Duration
	// SendQueue is the most frames queued for one client (default 4096).
	SendQueue int
	// SendQueueBytes is the most bytes queued for one client (default
	// 4 × MaxFrame). Beyond either bound the client is a slow consumer.
	SendQueueBytes int
}

func (o *Options) defaults() {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.SendQueue <= 0 {
		o.SendQueue = DefaultSendQueue
	}
	if o.SendQueueBytes <= 0 {
		o.SendQueueBytes = 4 * o.MaxFrame
	}
}

// Trust levels of a handshake key.
type level int

const (
	levelNone level = iota
	levelClient
	levelService
	levelSuper
)

func (l level) label() string {
	switch l {
	case levelSuper:
		return "super"
	case levelService:
		return "trusted"
	}
	return "untrusted"
}
