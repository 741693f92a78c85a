package httpx

import (
	"fmt"
	"net/http"
	"net/url"
)

// PathParam returns v, a path parameter a router cut from r's path,
// percent-decoded exactly once, whatever characters the path holds.
//
// Routers that match on the raw path when there is one (echo does) hand
// out parameters escaped when the request's path has escapes that do not
// round-trip (r.URL.RawPath is set, e.g. by %2F, %41 or lower-case hex)
// and decoded otherwise; decoding only in the first case gives every
// parameter the same single decoding. An invalid escape is an error.
func PathParam(r *http.Request, v string) (string, error) {
	if r.URL == nil || r.URL.RawPath == "" {
		return v, nil
	}
	out, err := url.PathUnescape(v)
	if err != nil {
		return "", fmt.Errorf("invalid percent-encoding in path: %w", err)
	}
	return out, nil
}
