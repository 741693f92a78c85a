package relay

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/switchboard/switchboard/internal/natsio"
)

// Trailers (RFC 9110 section 6.5) travel both ways on streamed bodies:
// the declared names in the open message (Sb-Relay-Trailers), the values
// on the natsio stream's EOF ([natsio.Sender.CloseWithTrailer]), encoded
// as header lines like a head. Inline bodies have no trailers: a body
// with trailers is chunked, so of unknown length, so streamed.

const hdrTrailers = "Sb-Relay-Trailers" // open: the request's declared trailer names

// Bounds of relayed trailers: what a sender may declare and send.
const (
	maxTrailerNames = 32
	maxTrailerBytes = 16 << 10
)

// forbiddenTrailers may not be sent as trailers (RFC 9110 section 6.5.1:
// framing, routing, authentication, controls), nor are hop-by-hop ones.
var forbiddenTrailers = map[string]bool{
	"Content-Length": true, "Content-Type": true, "Content-Encoding": true, "Content-Range": true,
	"Host": true, "Authorization": true, "Set-Cookie": true, "Cache-Control": true, "Expect": true,
	"Max-Forwards": true, "Trailer": true, "Transfer-Encoding": true, "Te": true, "Connection": true,
	"Keep-Alive": true, "Upgrade": true,
}

// trailerName reports whether name can be relayed as a trailer: a token,
// neither forbidden nor Proxy-*.
func trailerName(name string) bool {
	if name == "" || len(name) > 256 || strings.HasPrefix(name, "Proxy-") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return !forbiddenTrailers[http.CanonicalHeaderKey(name)]
}

// declaredTrailers returns the trailer names of h worth relaying, joined
// for the open message, or "" for none.
func declaredTrailers(h http.Header) string {
	var names []string
	for name := range h {
		if len(names) < maxTrailerNames && trailerName(name) {
			names = append(names, http.CanonicalHeaderKey(name))
		}
	}
	return strings.Join(names, ",")
}

// parseDeclared parses the declared names of an open message; anything
// malformed is an error.
func parseDeclared(v string) (http.Header, error) {
	if v == "" {
		return nil, nil
	}
	names := strings.Split(v, ",")
	if len(names) > maxTrailerNames {
		return nil, fmt.Errorf("%w: more than %d trailers declared", ErrBadRequest, maxTrailerNames)
	}
	h := make(http.Header, len(names))
	for _, n := range names {
		if !trailerName(n) {
			return nil, fmt.Errorf("%w: trailer name %.64q", ErrBadRequest, n)
		}
		h[http.CanonicalHeaderKey(n)] = nil
	}
	return h, nil
}

// encodeTrailer encodes the relayable trailers of h with values, nil when
// there are none.
func encodeTrailer(h http.Header) ([]byte, error) {
	out := http.Header{}
	for name, values := range h {
		if len(values) > 0 && trailerName(name) {
			out[http.CanonicalHeaderKey(name)] = values
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	b, err := appendHeader(nil, out, nil)
	if err == nil && len(b) > maxTrailerBytes {
		err = fmt.Errorf("trailers of %d bytes, more than %d", len(b), maxTrailerBytes)
	}
	return b, err
}

// decodeTrailer decodes a trailer from the other side, which is not
// trusted: malformed, oversized or forbidden trailers are an error.
func decodeTrailer(b []byte) (http.Header, error) {
	if b == nil {
		return nil, nil
	}
	if len(b) > maxTrailerBytes {
		return nil, fmt.Errorf("trailer of %d bytes", len(b))
	}
	h, rest, err := parseHeader(b)
	if err != nil || len(rest) > 0 || len(h) > maxTrailerNames {
		return nil, fmt.Errorf("malformed trailer")
	}
	for name := range h {
		if !trailerName(name) {
			return nil, fmt.Errorf("trailer name %.64q not allowed", name)
		}
	}
	return h, nil
}

// closeStream writes last, the body's last bytes (may be empty), and ends
// the stream cleanly with the trailers of h, or with an error when they
// cannot be relayed. Without trailers the end travels with the last
// bytes (see [natsio.Sender.WriteAndClose]).
func closeStream(s *natsio.Sender, h http.Header, last []byte) error {
	tr, err := encodeTrailer(h)
	if err != nil {
		_ = s.CloseWithError("trailers: " + err.Error())
		return err
	}
	if tr == nil {
		return s.WriteAndClose(last)
	}
	if len(last) > 0 {
		if _, err := s.Write(last); err != nil {
			_ = s.CloseWithError("stopped")
			return err
		}
	}
	return s.CloseWithTrailer(tr)
}

// trailerBody is the agent's request body from a caller's stream: at its
// end it fills the outgoing request's declared trailers, which the
// transport sends after the body.
type trailerBody struct {
	r   *natsio.Receiver
	dst http.Header
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		h, terr := decodeTrailer(b.r.Trailer())
		if terr != nil {
			return n, fmt.Errorf("%w: %v", ErrBadRequest, terr)
		}
		for name, values := range h {
			if _, declared := b.dst[name]; declared {
				b.dst[name] = values
			}
		}
	}
	return n, err
}
