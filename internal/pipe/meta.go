package pipe

import (
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
)

// Bounds of the headers that pass from a producer to its consumer. A
// producer that exceeds one gets 400 before it waits.
const (
	// MaxHeaderValue is the longest value, in bytes, of a header that
	// passes (Content-Type, Content-Disposition, each X-Piping).
	MaxHeaderValue = 1024
	// MaxPipingValues is the most X-Piping values a producer may send.
	MaxPipingValues = 16
)

// Meta is what a consumer learns about the producer's body besides its
// bytes: the producer's headers that pass through. Nothing else of the
// producer's request reaches the consumer.
type Meta struct {
	// ContentType is what the consumer is told, already normalised (the
	// transport decides the default).
	ContentType string
	// Length is the body's length in bytes, as the producer announced it;
	// -1 = unknown. The transfer fails with [ErrLength] if the body turns
	// out shorter or longer.
	Length int64
	// Disposition is the producer's Content-Disposition; "" = none.
	Disposition string
	// Piping are the producer's X-Piping values, in order.
	Piping []string
	// N is the number of receivers the party asked for (?n=N); 0 or 1 =
	// one. A claim carries the claimer's, and parties whose N differ are
	// not paired (see fanout.go).
	N int
	// Pub marks a pub/sub producer (?pubsub=true): its claims pass
	// whatever N the consumer has.
	Pub bool
}

// validate checks the bounds: every value at most MaxHeaderValue bytes
// without control characters (CR and LF above all; tab is allowed), at
// most MaxPipingValues X-Piping values, and a length of -1 or more.
func (m Meta) validate() error {
	if m.Length < -1 {
		return fmt.Errorf("%w: negative Content-Length %d", ErrBadHeader, m.Length)
	}
	if len(m.Piping) > MaxPipingValues {
		return fmt.Errorf("%w: %d X-Piping values, at most %d pass", ErrBadHeader, len(m.Piping), MaxPipingValues)
	}
	if err := checkValue("Content-Type", m.ContentType); err != nil {
		return err
	}
	if err := checkValue("Content-Disposition", m.Disposition); err != nil {
		return err
	}
	for _, v := range m.Piping {
		if err := checkValue("X-Piping", v); err != nil {
			return err
		}
	}
	return nil
}

// checkValue vets one header value of the producer.
func checkValue(name, v string) error {
	if len(v) > MaxHeaderValue {
		return fmt.Errorf("%w: %s of %d bytes is longer than %d", ErrBadHeader, name, len(v), MaxHeaderValue)
	}
	if !validValue(v) {
		return fmt.Errorf("%w: %s holds a control character (CR, LF, ...)", ErrBadHeader, name)
	}
	return nil
}

// validValue reports whether v is a header value that can be sent on as
// is: no control character but tab.
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// Claim headers carrying a producer's [Meta] between gateways, in the
// claim (producer claims) or the claim's answer (producer answers).
// Gateways that predate a header ignore it; a missing length means
// unknown.
const (
	hdrContentType = "Sb-Pipe-Content-Type"
	hdrLength      = "Sb-Pipe-Length"
	hdrDisposition = "Sb-Pipe-Disposition"
	hdrPiping      = "Sb-Pipe-Piping"
)

// setOn writes m into the headers of a claim or claim answer.
func (m Meta) setOn(h nats.Header) {
	h.Set(hdrContentType, m.ContentType)
	if m.Length >= 0 {
		h.Set(hdrLength, strconv.FormatInt(m.Length, 10))
	}
	if m.Disposition != "" {
		h.Set(hdrDisposition, m.Disposition)
	}
	for _, v := range m.Piping {
		h.Add(hdrPiping, v)
	}
	m.setGroupOn(h)
}

// metaFrom reads the Meta another gateway put in h. That gateway checked
// the bounds; values that break them anyway are dropped, never passed on.
func metaFrom(h nats.Header) Meta {
	m := Meta{ContentType: h.Get(hdrContentType), Length: -1}
	if m.ContentType == "" || checkValue("", m.ContentType) != nil {
		m.ContentType = "application/octet-stream"
	}
	if n, err := strconv.ParseInt(h.Get(hdrLength), 10, 64); err == nil && n >= 0 {
		m.Length = n
	}
	if v := h.Get(hdrDisposition); checkValue("", v) == nil {
		m.Disposition = v
	}
	for _, v := range h.Values(hdrPiping) {
		if len(m.Piping) < MaxPipingValues && checkValue("", v) == nil {
			m.Piping = append(m.Piping, v)
		}
	}
	m.N, m.Pub = groupFrom(h)
	return m
}
